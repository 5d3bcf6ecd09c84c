// Port ranges (NetworkPolicy endPort): splitting into aligned blocks,
// validation, the lookup order in the kernel through the real programs
// (BPF_PROG_TEST_RUN), per-range counters, DumpPolicy and Trace through the
// endpoint manager, and the capacity limit of an endpoint's policy map.
#include <arpa/inet.h>

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_objects.h"
#include "services/datapath/endpoint_manager.h"
#include "services/datapath/endpoint_policy.h"
#include "services/datapath/ipcache_map.h"
#include "services/datapath/packet_builder.h"
#include "services/datapath/policy_map.h"
#include "services/datapath/program_runner.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

constexpr PolicyDirection kIngress = PolicyDirection::kIngress;
constexpr PolicyDirection kEgress = PolicyDirection::kEgress;
constexpr PolicyAction kAllow = PolicyAction::kAllow;
constexpr PolicyAction kDeny = PolicyAction::kDeny;
constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

PolicyRule Range(PolicyDirection direction, uint32_t peer, uint8_t protocol, uint16_t first,
                 uint16_t last, PolicyAction action, uint32_t rule_id) {
  PolicyRule rule{direction, peer, protocol, first, action, rule_id};
  rule.end_port = last;
  return rule;
}

PolicyRule Exact(PolicyDirection direction, uint32_t peer, uint8_t protocol, uint16_t port,
                 PolicyAction action, uint32_t rule_id) {
  return PolicyRule{direction, peer, protocol, port, action, rule_id};
}

// --- splitting ---------------------------------------------------------------

TEST(SplitPortRangeTest, CoversExactlyWithAlignedBlocks) {
  std::mt19937 random(5);
  std::vector<std::pair<uint16_t, uint16_t>> ranges = {
      {1, 65535}, {1, 65534}, {80, 80}, {8000, 8080}, {0, 65535}, {65535, 65535}, {32768, 65535}};
  for (int i = 0; i < 2000; ++i) {
    uint16_t a = static_cast<uint16_t>(random() % 65536);
    uint16_t b = static_cast<uint16_t>(random() % 65536);
    ranges.emplace_back(std::min(a, b), std::max(a, b));
  }
  for (const auto& [first, last] : ranges) {
    SCOPED_TRACE(std::to_string(first) + "-" + std::to_string(last));
    std::vector<PortBlock> blocks = SplitPortRange(first, last);
    ASSERT_FALSE(blocks.empty());
    EXPECT_LE(blocks.size(), 32u);
    uint32_t next = first;
    for (const PortBlock& block : blocks) {
      ASSERT_LE(block.prefix_length, 16);
      uint32_t size = 1u << (16 - block.prefix_length);
      EXPECT_EQ(block.first % size, 0u) << "block not aligned";
      EXPECT_EQ(block.first, next) << "gap or overlap";
      next = block.last() + 1;
    }
    EXPECT_EQ(next, uint32_t{last} + 1);
  }
  EXPECT_EQ(SplitPortRange(1, 65535).size(), 16u);
  EXPECT_EQ(SplitPortRange(1, 65534).size(), 30u);  // the worst case
  EXPECT_EQ(SplitPortRange(0, 65535), (std::vector<PortBlock>{{0, 0}}));
  EXPECT_EQ(SplitPortRange(8000, 8080),
            (std::vector<PortBlock>{{8000, 10}, {8064, 12}, {8080, 16}}));
}

// --- validation --------------------------------------------------------------

absl::Status Validate(std::vector<PolicyRule> rules) {
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.rules = std::move(rules);
  return ValidatePolicy(policy);
}

TEST(PortRangeValidationTest, RejectsRangesThatMeanNothingOrContradict) {
  struct Case {
    const char* name;
    std::vector<PolicyRule> rules;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"end below start", {Range(kIngress, 300, kTcp, 90, 80, kAllow, 1)}, "is below port 90"},
      {"no protocol", {Range(kIngress, 300, 0, 80, 90, kAllow, 1)}, "needs a protocol"},
      {"no start port", {Range(kIngress, 300, kTcp, 0, 90, kAllow, 1)}, "non-zero port"},
      {"icmp type above 255", {Range(kIngress, 300, 1, 8, 300, kAllow, 1)}, "ICMP type"},
      {"duplicate range",
       {Range(kIngress, 300, kTcp, 80, 90, kAllow, 1), Range(kIngress, 300, kTcp, 80, 90, kAllow, 2)},
       "same direction, peer, protocol and ports"},
      {"overlap with different actions",
       {Range(kIngress, 300, kTcp, 1, 1000, kAllow, 1), Range(kIngress, 300, kTcp, 10, 20, kAllow, 2),
        Range(kIngress, 300, kTcp, 500, 2000, kDeny, 3)},
       "both allow and deny port 500"},
  };
  for (const Case& c : cases) {
    absl::Status status = Validate(c.rules);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(status.message().find(c.message), std::string::npos) << c.name << ": " << status;
  }
  // Fine: overlapping ranges that agree, a one-port range next to the same
  // exact port, the same range for another peer or direction, disagreeing
  // ranges that do not overlap.
  EXPECT_TRUE(Validate({Range(kIngress, 300, kTcp, 1, 1000, kAllow, 1),
                        Range(kIngress, 300, kTcp, 10, 2000, kAllow, 2),
                        Range(kIngress, 300, kTcp, 80, 80, kAllow, 3),
                        Exact(kIngress, 300, kTcp, 80, kDeny, 4),
                        Range(kIngress, 301, kTcp, 10, 2000, kDeny, 5),
                        Range(kEgress, 300, kTcp, 10, 2000, kDeny, 6),
                        Range(kIngress, 300, kTcp, 2001, 3000, kDeny, 7)})
                  .ok());
}

// --- the programs --------------------------------------------------------------

constexpr uint32_t kIfindex = 1;  // loopback: BPF_PROG_TEST_RUN's default
constexpr uint32_t kEndpointId = 12;
constexpr uint32_t kPodIdentity = 1000;
constexpr uint32_t kPeerIdentity = 2000;
constexpr uint32_t kOtherIdentity = 3000;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }
const IpAddress kPod = Ip("10.0.0.1");
const IpAddress kPeer = Ip("10.0.0.2");
const IpAddress kOther = Ip("10.0.0.3");
const IpAddress kPod6 = Ip("fd00::1");
const IpAddress kPeer6 = Ip("fd00::2");

class PortRangeProgramsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<BpfObjects>> loaded = BpfObjects::Load(BpfLoadOptions{});
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    bpf_ = *std::move(loaded);
    policy_ = std::make_unique<PolicyMap>(*bpf_);
    IpCacheMap ipcache(*bpf_);
    ASSERT_TRUE(bpf_->SetEndpointForIfindex(kIfindex, kEndpointId, kPodIdentity).ok());
    for (const auto& [address, identity] :
         {std::pair{kPod, kPodIdentity}, std::pair{kPeer, kPeerIdentity},
          std::pair{kOther, kOtherIdentity}, std::pair{kPod6, kPodIdentity},
          std::pair{kPeer6, kPeerIdentity}}) {
      ASSERT_TRUE(ipcache.Upsert(IpPrefix(address, address.max_prefix_length()), identity).ok());
    }
  }

  void SetPolicy(std::vector<PolicyRule> rules) {
    EndpointPolicy policy;
    policy.ingress_isolated = true;
    policy.egress_isolated = true;
    policy.rules = std::move(rules);
    absl::Status status = policy_->Replace(kEndpointId, policy);
    ASSERT_TRUE(status.ok()) << status;
  }

  // The pod's ingress verdict for a new flow from `from` to `port`.
  TraceResult In(const IpAddress& from, uint8_t protocol, uint16_t port) {
    const IpAddress& to = from.is_v4() ? kPod : kPod6;
    PacketBuilder packet = protocol == kTcp ? PacketBuilder::Tcp(from, to, 40000, port)
                                            : PacketBuilder::Udp(from, to, 40000, port);
    absl::StatusOr<TraceResult> result =
        TraceProgram(bpf_->to_container_fd(), kIfindex, packet.Build());
    EXPECT_TRUE(result.ok()) << result.status();
    return result.value_or(TraceResult{});
  }
  TraceResult Out(const IpAddress& to, uint8_t protocol, uint16_t port) {
    PacketBuilder packet = protocol == kTcp ? PacketBuilder::Tcp(kPod, to, 40000, port)
                                            : PacketBuilder::Udp(kPod, to, 40000, port);
    absl::StatusOr<TraceResult> result =
        TraceProgram(bpf_->from_container_fd(), kIfindex, packet.Build());
    EXPECT_TRUE(result.ok()) << result.status();
    return result.value_or(TraceResult{});
  }

  std::unique_ptr<BpfObjects> bpf_;
  std::unique_ptr<PolicyMap> policy_;
};

// "allowed by rule N" / "dropped (reason R, rule N)", for readable failures.
std::string Decision(const TraceResult& result) {
  if (result.verdict == EBPFCNI_VERDICT_DROPPED) {
    return "dropped reason " + std::to_string(result.reason) + " rule " +
           std::to_string(result.rule_id);
  }
  return "verdict " + std::to_string(result.verdict) + " rule " + std::to_string(result.rule_id);
}
std::string AllowedBy(uint32_t rule) {
  return "verdict " + std::to_string(EBPFCNI_VERDICT_ALLOWED_POLICY) + " rule " +
         std::to_string(rule);
}
std::string DeniedBy(uint32_t rule) {
  return "dropped reason " + std::to_string(EBPFCNI_DROP_POLICY_DENY) + " rule " +
         std::to_string(rule);
}
const std::string kDefaultDeny =
    "dropped reason " + std::to_string(EBPFCNI_DROP_POLICY_DEFAULT_DENY) + " rule 0";

TEST_F(PortRangeProgramsTest, RangeBoundariesBothFamiliesAndDirections) {
  SetPolicy({Range(kIngress, kPeerIdentity, kTcp, 8000, 8080, kAllow, 5),
             Range(kEgress, 0, kUdp, 1, 65535, kAllow, 6)});
  EXPECT_EQ(Decision(In(kPeer, kTcp, 7999)), kDefaultDeny);
  for (uint16_t port : {8000, 8001, 8063, 8064, 8079, 8080}) {
    EXPECT_EQ(Decision(In(kPeer, kTcp, port)), AllowedBy(5)) << port;
    EXPECT_EQ(Decision(In(kPeer6, kTcp, port)), AllowedBy(5)) << "IPv6 " << port;
  }
  EXPECT_EQ(Decision(In(kPeer, kTcp, 8081)), kDefaultDeny);
  EXPECT_EQ(Decision(In(kOther, kTcp, 8040)), kDefaultDeny) << "another peer";
  EXPECT_EQ(Decision(In(kPeer, kUdp, 8040)), kDefaultDeny) << "another protocol";
  // The whole port space for any peer, egress only.
  for (uint16_t port : {1, 2, 1023, 32767, 32768, 65534, 65535}) {
    EXPECT_EQ(Decision(Out(kOther, kUdp, port)), AllowedBy(6)) << port;
  }
  EXPECT_EQ(Decision(Out(kOther, kTcp, 80)), kDefaultDeny);
  EXPECT_EQ(Decision(In(kOther, kUdp, 80)), kDefaultDeny) << "ranges are per direction";
}

TEST_F(PortRangeProgramsTest, LookupOrderExactThenRangeThenAnyPort) {
  SetPolicy({
      Range(kIngress, kPeerIdentity, kTcp, 100, 200, kAllow, 10),
      Exact(kIngress, kPeerIdentity, kTcp, 150, kDeny, 11),     // exact beats range
      Exact(kIngress, kPeerIdentity, kTcp, 0, kDeny, 12),       // range beats any-port
      Range(kIngress, 0, kTcp, 300, 400, kAllow, 13),           // any-peer range ...
      Exact(kIngress, kPeerIdentity, 0, 0, kDeny, 14),          // ... loses to peer rules
      Range(kIngress, kOtherIdentity, kTcp, 1, 65535, kAllow, 15),
      Range(kIngress, kOtherIdentity, kTcp, 80, 90, kAllow, 16),  // narrower range first
      Exact(kIngress, 0, kTcp, 500, kDeny, 17),
      Range(kIngress, 0, kTcp, 450, 550, kAllow, 18),  // any-peer exact beats any-peer range
  });
  EXPECT_EQ(Decision(In(kPeer, kTcp, 120)), AllowedBy(10));
  EXPECT_EQ(Decision(In(kPeer, kTcp, 150)), DeniedBy(11));
  EXPECT_EQ(Decision(In(kPeer, kTcp, 250)), DeniedBy(12));
  EXPECT_EQ(Decision(In(kPeer, kTcp, 350)), DeniedBy(12)) << "(peer, tcp, any) before any-peer";
  EXPECT_EQ(Decision(In(kPeer, kUdp, 350)), DeniedBy(14));
  EXPECT_EQ(Decision(In(kOther, kTcp, 85)), AllowedBy(16));
  EXPECT_EQ(Decision(In(kOther, kTcp, 91)), AllowedBy(15));
  EXPECT_EQ(Decision(In(kOther, kTcp, 79)), AllowedBy(15));
  const IpAddress world = Ip("192.0.2.9");
  EXPECT_EQ(Decision(In(world, kTcp, 350)), AllowedBy(13));
  EXPECT_EQ(Decision(In(world, kTcp, 500)), DeniedBy(17));
  EXPECT_EQ(Decision(In(world, kTcp, 501)), AllowedBy(18));
  EXPECT_EQ(Decision(In(world, kTcp, 600)), kDefaultDeny);
}

TEST_F(PortRangeProgramsTest, LaterFragmentsHaveNoPortAndNeverMatchARange) {
  SetPolicy({Range(kIngress, kPeerIdentity, kUdp, 1, 65535, kAllow, 5)});
  std::vector<uint8_t> fragment =
      PacketBuilder::Udp(kPeer, kPod, 40000, 53).Fragment(100, false).Payload(64).Build();
  absl::StatusOr<TraceResult> result = TraceProgram(bpf_->to_container_fd(), kIfindex, fragment);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(Decision(*result), kDefaultDeny);
}

TEST_F(PortRangeProgramsTest, SharedBlocksCarryTheLowestRuleAndCountersFollowTheRanges) {
  // [80-100] and [80-95] share the block 80-95.
  SetPolicy({Range(kIngress, kPeerIdentity, kTcp, 80, 100, kAllow, 21),
             Range(kIngress, kPeerIdentity, kTcp, 80, 95, kAllow, 20),
             Range(kIngress, kPeerIdentity, kTcp, 1000, 1999, kAllow, 22)});
  EXPECT_EQ(Decision(In(kPeer, kTcp, 85)), AllowedBy(20));
  EXPECT_EQ(Decision(In(kPeer, kTcp, 97)), AllowedBy(21));

  // Real runs count per block; the dump sums them per range.
  for (uint16_t port : {1000, 1023, 1024, 1500, 1999}) {
    absl::StatusOr<int> action = RunProgram(
        bpf_->to_container_fd(), kIfindex, PacketBuilder::Tcp(kPeer, kPod, 40000, port).Build());
    ASSERT_TRUE(action.ok()) << action.status();
    EXPECT_EQ(*action, kTcActOk) << port;
  }
  absl::StatusOr<std::vector<PolicyEntryCounters>> counters = policy_->ReadCounters(kEndpointId);
  ASSERT_TRUE(counters.ok()) << counters.status();
  // As the kernel decides: 80-95 by rule 20, 96-100 by rule 21, 1000-1999.
  ASSERT_EQ(counters->size(), 3u);
  EXPECT_EQ((*counters)[0].rule.rule_id, 20u);
  EXPECT_EQ((*counters)[0].rule.port, 80);
  EXPECT_EQ((*counters)[0].rule.end_port, 95);
  EXPECT_EQ((*counters)[1].rule.rule_id, 21u);
  EXPECT_EQ((*counters)[1].rule.port, 96);
  EXPECT_EQ((*counters)[1].rule.end_port, 100);
  EXPECT_EQ((*counters)[2].rule.rule_id, 22u);
  EXPECT_EQ((*counters)[2].rule.port, 1000);
  EXPECT_EQ((*counters)[2].rule.end_port, 1999);
  EXPECT_EQ((*counters)[2].packets, 5u);
  EXPECT_EQ((*counters)[0].packets, 0u);
}

TEST_F(PortRangeProgramsTest, EndpointsWithoutRangesNeverProbeRangeKeys) {
  // A policy whose configuration says "no ranges" must not be fooled by a
  // stray range key: the shape bits, not the presence of keys, decide.
  SetPolicy({Exact(kIngress, kPeerIdentity, kTcp, 80, kAllow, 1)});
  EXPECT_EQ(Decision(In(kPeer, kTcp, 80)), AllowedBy(1));
  EXPECT_EQ(Decision(In(kPeer, kTcp, 81)), kDefaultDeny);
  absl::StatusOr<std::optional<EndpointPolicy>> read = policy_->Read(kEndpointId);
  ASSERT_TRUE(read.ok() && read->has_value());
  ASSERT_EQ((*read)->rules.size(), 1u);
  EXPECT_FALSE((*read)->rules[0].is_range());
}

TEST_F(PortRangeProgramsTest, PolicyBeyondTheMapCapacityIsResourceExhausted) {
  // 40000 peers x 30 blocks each: more entries than an endpoint's map holds.
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  for (uint32_t peer = 0; peer < 40000; ++peer) {
    policy.rules.push_back(Range(kIngress, 100000 + peer, kTcp, 1, 65534, kAllow, peer + 1));
  }
  absl::Status status = policy_->Replace(kEndpointId, policy);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_NE(status.message().find("1200002 map entries"), std::string::npos) << status;
  EXPECT_NE(status.message().find(std::to_string(EBPFCNI_POLICY_MAX_ENTRIES)), std::string::npos);
}

TEST_F(PortRangeProgramsTest, FiveHundredPoliciesWorthOfRulesFit) {
  // 500 policies, each allowing 10 peer identities on 5 ports and one port
  // range, in both directions: ~60k entries in one endpoint's map.
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.egress_isolated = true;
  uint32_t rule_id = 1;
  for (uint32_t p = 0; p < 500; ++p) {
    for (PolicyDirection direction : {kIngress, kEgress}) {
      for (uint32_t peer = 0; peer < 10; ++peer) {
        uint32_t identity = 256 + (p * 10 + peer) % 4000;
        for (uint16_t port = 0; port < 5; ++port) {
          policy.rules.push_back(
              Exact(direction, identity, kTcp, static_cast<uint16_t>(1000 + p * 5 + port), kAllow,
                    rule_id++));
        }
      }
      policy.rules.push_back(Range(direction, 256 + p, kUdp, static_cast<uint16_t>(10000 + p),
                                   static_cast<uint16_t>(20000 + p), kAllow, rule_id++));
    }
  }
  absl::Status status = policy_->Replace(kEndpointId, policy);
  ASSERT_TRUE(status.ok()) << status;
  // kPeer has identity 2000 = 256 + 1744: policy 174, peer 4, ports 1870-1874.
  EXPECT_EQ(Decision(In(kPeer, kTcp, 1000)), kDefaultDeny);
  EXPECT_EQ(In(kPeer, kTcp, 1872).verdict, uint32_t{EBPFCNI_VERDICT_ALLOWED_POLICY});
  EXPECT_EQ(In(kPeer, kUdp, 15000).verdict, uint32_t{EBPFCNI_VERDICT_DROPPED})
      << "identity 2000 has no range (ranges are for identities 256..755)";
}

// --- through the endpoint manager: Trace, DumpPolicy, errors naming the endpoint

class PortRangeManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pod_.ok());
    EndpointManagerOptions options;
    options.bpf_dir = bpf_dir_.path();
    options.state_dir = state_dir_.path();
    options.map_host_addresses = false;
    absl::StatusOr<std::unique_ptr<EndpointManager>> manager = EndpointManager::Start(options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = *std::move(manager);
    EndpointRecord record;
    record.key = {"ctr-range", "eth0"};
    record.host_ifindex = pod_.host_ifindex();
    record.addresses = {"10.253.0.2"};
    record.identity = kPodIdentity;
    ASSERT_TRUE(manager_->CreateEndpoint(record).ok());
    ASSERT_TRUE(manager_->UpsertPrefixIdentities({{*IpPrefix::Parse("10.99.0.0/16"), 4000}}).ok());
  }

  testing::ScopedBpfDir bpf_dir_{"range"};
  testing::ScopedTempDir state_dir_{"range-state"};
  testing::ScopedVethPair pod_{"rg", "10.253.0.2/30"};
  std::unique_ptr<EndpointManager> manager_;
};

TEST_F(PortRangeManagerTest, TraceAndDumpShowRanges) {
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.rules = {Range(kIngress, 4000, kTcp, 30000, 32767, kAllow, 77)};
  absl::StatusOr<PolicySummary> summary =
      manager_->ReplaceEndpointPolicy({"ctr-range", "eth0"}, policy);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->rule_count, 1u);

  for (auto [port, allowed] : {std::pair{29999, false}, std::pair{30000, true},
                               std::pair{31000, true}, std::pair{32767, true},
                               std::pair{32768, false}}) {
    TraceSpec spec;
    spec.source = Ip("10.99.1.1");
    spec.destination = Ip("10.253.0.2");
    spec.protocol = kTcp;
    spec.source_port = 5555;
    spec.destination_port = static_cast<uint16_t>(port);
    absl::StatusOr<std::vector<TraceHop>> hops = manager_->Trace(spec);
    ASSERT_TRUE(hops.ok()) << hops.status();
    ASSERT_EQ(hops->size(), 1u);
    const TraceResult& result = (*hops)[0].result;
    EXPECT_EQ(result.peer_identity, 4000u);
    if (allowed) {
      EXPECT_EQ(Decision(result), AllowedBy(77)) << port;
    } else {
      EXPECT_EQ(Decision(result), kDefaultDeny) << port;
    }
  }

  absl::StatusOr<PolicyDump> dump = manager_->DumpPolicy({"ctr-range", "eth0"});
  ASSERT_TRUE(dump.ok()) << dump.status();
  ASSERT_EQ(dump->entries.size(), 1u);
  EXPECT_EQ(dump->entries[0].rule, policy.rules[0]);
}

TEST_F(PortRangeManagerTest, TooBigAPolicyNamesTheEndpointAndKeepsTheOldOne) {
  EndpointPolicy small;
  small.ingress_isolated = true;
  small.rules = {Exact(kIngress, 4000, kTcp, 80, kAllow, 1)};
  ASSERT_TRUE(manager_->ReplaceEndpointPolicy({"ctr-range", "eth0"}, small).ok());

  EndpointPolicy huge;
  huge.ingress_isolated = true;
  for (uint32_t peer = 0; peer < 40000; ++peer) {
    huge.rules.push_back(Range(kIngress, 100000 + peer, kTcp, 1, 65534, kAllow, peer + 1));
  }
  absl::StatusOr<PolicySummary> result =
      manager_->ReplaceEndpointPolicy({"ctr-range", "eth0"}, huge);
  ASSERT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
  EXPECT_NE(result.status().message().find("ctr-range/eth0"), std::string::npos)
      << result.status();
  EXPECT_NE(result.status().message().find("1200002"), std::string::npos);

  absl::StatusOr<PolicyDump> dump = manager_->DumpPolicy({"ctr-range", "eth0"});
  ASSERT_TRUE(dump.ok());
  ASSERT_EQ(dump->entries.size(), 1u);
  EXPECT_EQ(dump->entries[0].rule, small.rules[0]);
}

}  // namespace
}  // namespace ebpfcni::datapath
