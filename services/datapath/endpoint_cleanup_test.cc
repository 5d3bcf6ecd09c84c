// What the datapath cleans up and keeps current besides endpoints
// themselves (issue 3): conntrack entries of a deleted endpoint (a reused IP
// must not inherit flows) and the host's addresses in the ipcache as they
// change. Real kernel: veths, programs run with BPF_PROG_TEST_RUN on them, a
// test-owned network namespace for address changes.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/conntrack_map.h"
#include "services/datapath/endpoint_manager.h"
#include "services/datapath/host_address_monitor.h"
#include "services/datapath/packet_builder.h"
#include "services/datapath/program_runner.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

using testing::RunCommand;
using testing::ScopedBpfDir;
using testing::ScopedTempDir;
using testing::ScopedVethPair;
using testing::TestTag;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

class EndpointCleanupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EndpointManagerOptions options;
    options.bpf_dir = bpf_dir_.path();
    options.state_dir = state_dir_.path();
    options.map_host_addresses = false;  // the monitor test drives it itself
    absl::StatusOr<std::unique_ptr<EndpointManager>> manager = EndpointManager::Start(options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = *std::move(manager);
  }

  // Waits (bounded) until `done` holds.
  static bool Eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 250; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return done();
  }

  uint32_t IdentityOf(const char* address) {
    absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> entries =
        manager_->ListPrefixIdentities();
    EXPECT_TRUE(entries.ok()) << entries.status();
    IpPrefix host(Ip(address), Ip(address).max_prefix_length());
    if (!entries.ok()) return 0;
    for (const auto& [prefix, identity] : *entries) {
      if (prefix == host) return identity;
    }
    return 0;  // no exact entry
  }

  size_t ConntrackEntriesWith(const IpAddress& address) {
    absl::StatusOr<std::vector<ConntrackEntry>> entries = ConntrackMap(manager_->bpf()).List();
    EXPECT_TRUE(entries.ok()) << entries.status();
    size_t count = 0;
    for (const ConntrackEntry& entry : entries.value_or(std::vector<ConntrackEntry>{})) {
      if (entry.source == address || entry.destination == address) ++count;
    }
    return count;
  }

  ScopedBpfDir bpf_dir_{"cleanup"};
  ScopedTempDir state_dir_{"cleanup-state"};
  std::unique_ptr<EndpointManager> manager_;
};

TEST_F(EndpointCleanupTest, DeletedEndpointsFlowsAreFlushedSoAReusedIpInheritsNothing) {
  ScopedVethPair pod_a("ca", "10.254.0.2/30");
  ScopedVethPair pod_b("cb", "10.254.0.6/30");
  ASSERT_TRUE(pod_a.ok() && pod_b.ok());
  const IpAddress a = Ip("10.254.0.2"), b = Ip("10.254.0.6"), world = Ip("10.254.9.9");

  EndpointRecord record_a;
  record_a.key = {"ctr-a", "eth0"};
  record_a.host_ifindex = pod_a.host_ifindex();
  record_a.addresses = {"10.254.0.2"};
  record_a.identity = 1000;
  ASSERT_TRUE(manager_->CreateEndpoint(record_a).ok());
  // B accepts nothing new: only replies to its own flows come in.
  EndpointRecord record_b;
  record_b.key = {"ctr-b", "eth0"};
  record_b.host_ifindex = pod_b.host_ifindex();
  record_b.addresses = {"10.254.0.6"};
  record_b.identity = 2000;
  EndpointPolicy isolated_ingress;
  isolated_ingress.ingress_isolated = true;
  ASSERT_TRUE(manager_->CreateEndpoint(record_b, isolated_ingress).ok());

  const int from_b = manager_->bpf().from_container_fd();
  const int to_b = manager_->bpf().to_container_fd();
  const int to_a = manager_->bpf().to_container_fd();
  // B connects to A (and to a world address); A's ingress lets it in.
  ASSERT_EQ(*RunProgram(from_b, pod_b.host_ifindex(), PacketBuilder::Tcp(b, a, 40000, 80).Build()),
            kTcActOk);
  ASSERT_EQ(*RunProgram(to_a, pod_a.host_ifindex(), PacketBuilder::Tcp(b, a, 40000, 80).Build()),
            kTcActOk);
  ASSERT_EQ(
      *RunProgram(from_b, pod_b.host_ifindex(), PacketBuilder::Tcp(b, world, 40001, 443).Build()),
      kTcActOk);
  const std::vector<uint8_t> reply_from_a =
      PacketBuilder::Tcp(a, b, 80, 40000, kTcpSyn | kTcpAck).Build();
  absl::StatusOr<TraceResult> before = TraceProgram(to_b, pod_b.host_ifindex(), reply_from_a);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->verdict, uint32_t{EBPFCNI_VERDICT_ALLOWED_CONNTRACK}) << "control: a reply";
  EXPECT_EQ(ConntrackEntriesWith(a), 2u);  // B's egress entry and A's ingress entry

  ASSERT_TRUE(*manager_->DeleteEndpoint(record_a.key));
  EXPECT_EQ(ConntrackEntriesWith(a), 0u);
  EXPECT_EQ(ConntrackEntriesWith(world), 1u) << "flows of other addresses are kept";

  // A new pod gets A's address: B's old flow does not let it in.
  EndpointRecord record_new = record_a;
  record_new.key = {"ctr-new", "eth0"};
  record_new.identity = 3000;
  ASSERT_TRUE(manager_->CreateEndpoint(record_new).ok());
  absl::StatusOr<TraceResult> after = TraceProgram(to_b, pod_b.host_ifindex(), reply_from_a);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->verdict, uint32_t{EBPFCNI_VERDICT_DROPPED});
  EXPECT_EQ(after->reason, uint32_t{EBPFCNI_DROP_POLICY_DEFAULT_DENY});
  EXPECT_EQ(after->peer_identity, 3000u);
}

// A deleted endpoint's policy map stays in its slot, emptied, and the next
// new endpoint takes that id and gets its policy written in place (no RCU
// grace period on the ADD path). Nothing of the old policy may show.
TEST_F(EndpointCleanupTest, ReusedIdGetsItsPolicyInPlaceWithoutTheOldRules) {
  ScopedVethPair pod("cr", "10.254.1.2/30");
  ASSERT_TRUE(pod.ok());
  ASSERT_TRUE(manager_->UpsertPrefixIdentities({{*IpPrefix::Parse("10.99.0.0/16"), 4000}}).ok());
  auto create = [&](const std::string& container, const std::optional<EndpointPolicy>& policy) {
    EndpointRecord record;
    record.key = {container, "eth0"};
    record.host_ifindex = pod.host_ifindex();
    record.addresses = {"10.254.1.2"};
    record.identity = 1000;
    absl::StatusOr<EndpointStatus> created = manager_->CreateEndpoint(record, policy);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->record.endpoint_id : 0u;
  };
  auto trace = [&](uint16_t port) {
    TraceSpec spec;
    spec.source = Ip("10.99.0.1");
    spec.destination = Ip("10.254.1.2");
    spec.protocol = 6;
    spec.source_port = 5000;
    spec.destination_port = port;
    absl::StatusOr<std::vector<TraceHop>> hops = manager_->Trace(spec);
    EXPECT_TRUE(hops.ok() && hops->size() == 1) << hops.status();
    return hops.ok() && !hops->empty() ? (*hops)[0].result : TraceResult{};
  };

  EndpointPolicy old_policy;
  old_policy.ingress_isolated = true;
  old_policy.rules = {PolicyRule{PolicyDirection::kIngress, 4000, 6, 80, PolicyAction::kAllow, 1}};
  const uint32_t old_id = create("ctr-old", old_policy);
  ASSERT_NE(old_id, 0u);
  EXPECT_EQ(trace(80).verdict, uint32_t{EBPFCNI_VERDICT_ALLOWED_POLICY});
  ASSERT_TRUE(*manager_->DeleteEndpoint({"ctr-old", "eth0"}));

  EndpointPolicy new_policy;
  new_policy.ingress_isolated = true;
  new_policy.rules = {PolicyRule{PolicyDirection::kIngress, 0, 6, 443, PolicyAction::kAllow, 2}};
  const uint32_t new_id = create("ctr-new", new_policy);
  EXPECT_EQ(new_id, old_id) << "the new endpoint takes the freed id with its spare map";
  EXPECT_EQ(trace(80).reason, uint32_t{EBPFCNI_DROP_POLICY_DEFAULT_DENY}) << "old rule leaked";
  EXPECT_EQ(trace(443).rule_id, 2u);
  absl::StatusOr<PolicyDump> dump = manager_->DumpPolicy({"ctr-new", "eth0"});
  ASSERT_TRUE(dump.ok());
  ASSERT_EQ(dump->entries.size(), 1u);
  EXPECT_EQ(dump->entries[0].rule, new_policy.rules[0]);
  ASSERT_TRUE(*manager_->DeleteEndpoint({"ctr-new", "eth0"}));

  // Without a policy the next owner is not isolated at all.
  EXPECT_EQ(create("ctr-open", std::nullopt), old_id);
  EXPECT_EQ(trace(80).verdict, uint32_t{EBPFCNI_VERDICT_ALLOWED_NOT_ISOLATED});
  absl::StatusOr<EndpointStatus> open = manager_->GetEndpoint({"ctr-open", "eth0"});
  ASSERT_TRUE(open.ok());
  EXPECT_FALSE(open->policy.installed);

  // A policy that does not fit the spare gets a new map (swapped in).
  ASSERT_TRUE(*manager_->DeleteEndpoint({"ctr-open", "eth0"}));
  EndpointPolicy big;
  big.ingress_isolated = true;
  for (uint16_t port = 1; port <= 200; ++port) {
    big.rules.push_back(PolicyRule{PolicyDirection::kIngress, 4000, 6, port, PolicyAction::kAllow,
                                   port});
  }
  create("ctr-big", big);
  EXPECT_EQ(trace(150).rule_id, 150u);
  EXPECT_EQ(trace(201).reason, uint32_t{EBPFCNI_DROP_POLICY_DEFAULT_DENY});
}

// At start a background thread puts spare maps into free id slots, so the
// first pods' ADDs do not wait for a grace period either.
TEST_F(EndpointCleanupTest, PrefilledSparesServeTheFirstEndpoints) {
  EXPECT_TRUE(Eventually([&] { return manager_->spare_count() >= 32; }))
      << manager_->spare_count() << " spares";
  ScopedVethPair pod("cp", "10.254.2.2/30");
  ASSERT_TRUE(pod.ok());
  EndpointRecord record;
  record.key = {"ctr-first", "eth0"};
  record.host_ifindex = pod.host_ifindex();
  record.addresses = {"10.254.2.2"};
  record.identity = 1000;
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.rules = {PolicyRule{PolicyDirection::kIngress, 0, 17, 53, PolicyAction::kAllow, 9}};
  absl::StatusOr<EndpointStatus> created = manager_->CreateEndpoint(record, policy);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_GT(created->record.endpoint_id, uint32_t{EBPFCNI_MAX_ENDPOINT_ID} - 64)
      << "a prefilled id (they are taken from the top of the id space)";
  EXPECT_EQ(manager_->spare_count(), 31u);
  absl::StatusOr<PolicyDump> dump = manager_->DumpPolicy(record.key);
  ASSERT_TRUE(dump.ok());
  ASSERT_EQ(dump->entries.size(), 1u);
  EXPECT_EQ(dump->entries[0].rule, policy.rules[0]);
  EXPECT_TRUE(dump->summary.ingress_isolated);
}

// A network namespace of the test's own, removed at the end.
class ScopedNetns {
 public:
  explicit ScopedNetns(const std::string& suffix) : name_(TestTag() + "-" + suffix) {
    ok_ = RunCommand("ip netns add " + name_) == 0 &&
          // A veth pair inside the namespace (no dummy module on every kernel).
          RunCommand("ip -n " + name_ + " link add " + TestTag() + "am type veth peer name " +
                     TestTag() + "an") == 0 &&
          RunCommand("ip -n " + name_ + " link set " + TestTag() + "am up") == 0;
  }
  ~ScopedNetns() { RunCommand("ip netns del " + name_ + " 2>/dev/null"); }
  bool ok() const { return ok_; }
  // Runs `ip -n <ns> <args>`.
  int Ip(const std::string& args) const { return RunCommand("ip -n " + name_ + " " + args); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool ok_ = false;
};

TEST_F(EndpointCleanupTest, HostAddressesFollowAddressChanges) {
  ScopedNetns netns("addr");
  ASSERT_TRUE(netns.ok());
  const std::string dev = TestTag() + "am";
  ASSERT_EQ(netns.Ip("addr add 10.254.100.1/32 dev " + dev), 0);

  // The monitor (and the refreshes it triggers) live in the test's
  // namespace: a thread that entered it starts the monitor, whose own
  // thread inherits the namespace. The manager's maps are not per
  // namespace.
  std::unique_ptr<HostAddressMonitor> monitor;
  std::thread starter([&] {
    int fd = open(("/run/netns/" + netns.name()).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(setns(fd, CLONE_NEWNET), 0);
    close(fd);
    absl::StatusOr<std::unique_ptr<HostAddressMonitor>> started =
        HostAddressMonitor::Start([this] { ASSERT_TRUE(manager_->RefreshHostAddresses().ok()); });
    ASSERT_TRUE(started.ok()) << started.status();
    monitor = *std::move(started);
    ASSERT_TRUE(manager_->RefreshHostAddresses().ok());
  });
  starter.join();
  ASSERT_NE(monitor, nullptr);
  EXPECT_EQ(IdentityOf("10.254.100.1"), uint32_t{EBPFCNI_IDENTITY_HOST});

  ASSERT_EQ(netns.Ip("addr add 10.254.100.2/32 dev " + dev), 0);
  ASSERT_EQ(netns.Ip("addr add fd00:254::1/128 dev " + dev + " nodad"), 0);
  EXPECT_TRUE(Eventually([&] { return IdentityOf("10.254.100.2") == EBPFCNI_IDENTITY_HOST; }));
  EXPECT_TRUE(Eventually([&] { return IdentityOf("fd00:254::1") == EBPFCNI_IDENTITY_HOST; }));

  ASSERT_EQ(netns.Ip("addr del 10.254.100.1/32 dev " + dev), 0);
  EXPECT_TRUE(Eventually([&] { return IdentityOf("10.254.100.1") == 0; }))
      << "a removed host address leaves the ipcache";

  // An address someone else has mapped since is not ours to remove.
  ASSERT_TRUE(manager_->UpsertPrefixIdentities({{*IpPrefix::Parse("10.254.100.2/32"), 5000}}).ok());
  ASSERT_EQ(netns.Ip("addr del 10.254.100.2/32 dev " + dev), 0);
  ASSERT_EQ(netns.Ip("addr add 10.254.100.3/32 dev " + dev), 0);  // a later event as a barrier
  EXPECT_TRUE(Eventually([&] { return IdentityOf("10.254.100.3") == EBPFCNI_IDENTITY_HOST; }));
  EXPECT_EQ(IdentityOf("10.254.100.2"), 5000u);

  monitor.reset();  // before the manager it calls into
}

}  // namespace
}  // namespace ebpfcni::datapath
