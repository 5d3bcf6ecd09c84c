// Per-rule-entry counters: the slots of the policy_counters array that each
// policy entry carries. The allocator alone, then the real programs counting
// into slots across replaces, endpoints, exhaustion, and a restart over maps
// of an earlier version (counts in the policy_stats hash, entries without a
// slot).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_map_util.h"
#include "services/datapath/bpf_objects.h"
#include "services/datapath/ipcache_map.h"
#include "services/datapath/packet_builder.h"
#include "services/datapath/policy_counter_slots.h"
#include "services/datapath/policy_map.h"
#include "services/datapath/program_runner.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

// ---- the allocator ----------------------------------------------------------

TEST(PolicyCounterSlotsTest, HandsOutEachSlotOnceAndNeverSlotZero) {
  PolicyCounterSlots slots(4);  // 1, 2, 3
  EXPECT_EQ(slots.available(), 3u);
  std::vector<uint32_t> got = {slots.Allocate(), slots.Allocate(), slots.Allocate()};
  EXPECT_EQ(got, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(slots.Allocate(), EBPFCNI_POLICY_COUNTER_NONE);  // all held
  EXPECT_EQ(slots.available(), 0u);
}

TEST(PolicyCounterSlotsTest, ClaimedSlotsAreNotHandedOut) {
  PolicyCounterSlots slots(5);
  EXPECT_TRUE(slots.Claim(2));
  EXPECT_FALSE(slots.Claim(2));  // two entries on one slot: the second needs its own
  EXPECT_FALSE(slots.Claim(EBPFCNI_POLICY_COUNTER_NONE));
  EXPECT_FALSE(slots.Claim(5));  // beyond the array
  EXPECT_EQ(slots.Allocate(), 1u);
  EXPECT_EQ(slots.Allocate(), 3u);
  EXPECT_EQ(slots.Allocate(), 4u);
  EXPECT_EQ(slots.Allocate(), EBPFCNI_POLICY_COUNTER_NONE);
}

TEST(PolicyCounterSlotsTest, FreedSlotsComeBackOldestFirst) {
  PolicyCounterSlots slots(5);
  for (int i = 0; i < 4; ++i) slots.Allocate();
  slots.Release(3);
  slots.Release(1);
  slots.Release(1);  // twice: ignored
  slots.Release(0);  // "not counted": ignored
  EXPECT_EQ(slots.available(), 2u);
  EXPECT_EQ(slots.Allocate(), 3u);
  EXPECT_EQ(slots.Allocate(), 1u);
  EXPECT_EQ(slots.Allocate(), EBPFCNI_POLICY_COUNTER_NONE);
}

// Maps of earlier versions had `__u8 action; __u8 pad[3]`: the slot lives
// in what was padding, so their entries read as slot 0 ("not counted").
TEST(PolicyCounterSlotsTest, SlotSitsInTheBytesEarlierVersionsPadded) {
  ebpfcni_policy_value value{};
  value.action = EBPFCNI_ACTION_DENY;
  value.counter_slot = 0x030201;
  value.rule_id_or_flags = 7;
  uint8_t bytes[sizeof(value)];
  std::memcpy(bytes, &value, sizeof(value));
  EXPECT_EQ(sizeof(value), 8u);
  EXPECT_EQ(bytes[0], EBPFCNI_ACTION_DENY);
  EXPECT_EQ(bytes[1], 0x01);
  EXPECT_EQ(bytes[2], 0x02);
  EXPECT_EQ(bytes[3], 0x03);
  uint32_t rule_id;
  std::memcpy(&rule_id, bytes + 4, sizeof(rule_id));
  EXPECT_EQ(rule_id, 7u);
}

// ---- with the programs ------------------------------------------------------

constexpr uint32_t kIfindex = 1;  // loopback: BPF_PROG_TEST_RUN's default
constexpr uint32_t kEndpointId = 10;
constexpr uint32_t kOtherEndpointId = 11;
constexpr uint32_t kPodIdentity = 1000;
constexpr uint32_t kPeerIdentity = 2000;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }
const IpAddress kPod = Ip("10.0.0.1");
const IpAddress kPeer = Ip("10.0.0.2");

PolicyRule AllowTcp(uint16_t port, uint32_t rule_id) {
  return PolicyRule{PolicyDirection::kIngress, kPeerIdentity, kProtoTcp, port,
                    PolicyAction::kAllow, rule_id};
}

EndpointPolicy IngressIsolated(std::vector<PolicyRule> rules) {
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.rules = std::move(rules);
  return policy;
}

class PolicyCountersTest : public ::testing::Test {
 protected:
  void Load(BpfLoadOptions options) {
    bpf_.reset();
    absl::StatusOr<std::unique_ptr<BpfObjects>> loaded = BpfObjects::Load(options);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    bpf_ = *std::move(loaded);
    policy_ = std::make_unique<PolicyMap>(*bpf_);
    ASSERT_TRUE(bpf_->SetEndpointForIfindex(kIfindex, kEndpointId, kPodIdentity).ok());
    IpCacheMap ipcache(*bpf_);
    ASSERT_TRUE(ipcache.Upsert(IpPrefix(kPod, 32), kPodIdentity).ok());
    ASSERT_TRUE(ipcache.Upsert(IpPrefix(kPeer, 32), kPeerIdentity).ok());
  }
  void SetUp() override { Load(BpfLoadOptions{}); }

  // `count` new connections (SYNs) from the peer to `port`; each is judged
  // by policy. Returns how many passed.
  int Connect(uint16_t port, int count) {
    int passed = 0;
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<int> action =
          RunProgram(bpf_->to_container_fd(), kIfindex,
                     PacketBuilder::Tcp(kPeer, kPod, static_cast<uint16_t>(40000 + i), port)
                         .Build());
      EXPECT_TRUE(action.ok()) << action.status();
      if (action.ok() && *action == kTcActOk) ++passed;
    }
    return passed;
  }
  void SetPolicy(uint32_t endpoint_id, const EndpointPolicy& policy) {
    absl::Status status = policy_->Replace(endpoint_id, policy);
    ASSERT_TRUE(status.ok()) << status;
  }
  // Packets counted for each installed rule of the endpoint, by rule id.
  std::map<uint32_t, uint64_t> Packets(uint32_t endpoint_id) {
    absl::StatusOr<std::vector<PolicyEntryCounters>> counters =
        policy_->ReadCounters(endpoint_id);
    EXPECT_TRUE(counters.ok()) << counters.status();
    std::map<uint32_t, uint64_t> packets;
    if (counters.ok()) {
      for (const PolicyEntryCounters& entry : *counters) packets[entry.rule.rule_id] = entry.packets;
    }
    return packets;
  }

  std::unique_ptr<BpfObjects> bpf_;
  std::unique_ptr<PolicyMap> policy_;
};

TEST_F(PolicyCountersTest, ARuleDroppedAndAddedAgainStartsFromZero) {
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(80, 1), AllowTcp(81, 2)}));
  ASSERT_EQ(Connect(80, 3), 3);
  ASSERT_EQ(Connect(81, 1), 1);
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(81, 2)}));
  // Rule 1's slot is free again: a new rule may get it, and starts at zero.
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(81, 2), AllowTcp(82, 3), AllowTcp(80, 1)}));
  EXPECT_EQ(Packets(kEndpointId), (std::map<uint32_t, uint64_t>{{1, 0}, {2, 1}, {3, 0}}));
  ASSERT_EQ(Connect(80, 2), 2);
  EXPECT_EQ(Packets(kEndpointId), (std::map<uint32_t, uint64_t>{{1, 2}, {2, 1}, {3, 0}}));
}

TEST_F(PolicyCountersTest, EndpointsWithTheSameRuleCountApart) {
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(80, 1)}));
  SetPolicy(kOtherEndpointId, IngressIsolated({AllowTcp(80, 1)}));
  ASSERT_EQ(Connect(80, 4), 4);  // all on kEndpointId's interface
  EXPECT_EQ(Packets(kEndpointId)[1], 4u);
  EXPECT_EQ(Packets(kOtherEndpointId)[1], 0u);
}

TEST_F(PolicyCountersTest, ClearGivesTheSlotsBack) {
  uint32_t free_before = bpf_->policy_counter_slots().available();
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(80, 1), AllowTcp(81, 2)}));
  EXPECT_EQ(bpf_->policy_counter_slots().available(), free_before - 2);
  ASSERT_TRUE(policy_->Clear(kEndpointId).ok());
  EXPECT_EQ(bpf_->policy_counter_slots().available(), free_before);
}

TEST_F(PolicyCountersTest, AFailedReplaceGivesItsNewSlotsBack) {
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(80, 1)}));
  uint32_t free_before = bpf_->policy_counter_slots().available();
  // Two rules on one key: invalid, nothing changes.
  EXPECT_FALSE(policy_->Replace(kEndpointId, IngressIsolated({AllowTcp(81, 2), AllowTcp(81, 3)}))
                   .ok());
  std::vector<absl::Status> results = policy_->ReplaceMany(
      {PolicyMap::Update{kEndpointId, IngressIsolated({AllowTcp(82, 4), AllowTcp(82, 5)})}});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].ok());
  EXPECT_EQ(bpf_->policy_counter_slots().available(), free_before);
}

// Accounting must never cost enforcement: with every slot held, further
// entries are enforced and simply not counted.
TEST_F(PolicyCountersTest, EntriesBeyondTheSlotsAreEnforcedButNotCounted) {
  BpfLoadOptions options;
  options.policy_counter_slots = 3;  // slots 1 and 2
  Load(options);
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(80, 1), AllowTcp(81, 2), AllowTcp(82, 3)}));
  EXPECT_EQ(Connect(80, 1), 1);
  EXPECT_EQ(Connect(81, 1), 1);
  EXPECT_EQ(Connect(82, 2), 2);  // allowed
  EXPECT_EQ(Connect(83, 1), 0);  // default deny still
  EXPECT_EQ(Packets(kEndpointId), (std::map<uint32_t, uint64_t>{{1, 1}, {2, 1}, {3, 0}}));
  // Freed slots serve again: without rule 1, rule 3 gets one on the next replace.
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(81, 2), AllowTcp(82, 3)}));
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(81, 2)}));
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(81, 2), AllowTcp(82, 3)}));
  EXPECT_EQ(Connect(82, 2), 2);
  EXPECT_EQ(Packets(kEndpointId), (std::map<uint32_t, uint64_t>{{2, 1}, {3, 2}}));
}

TEST(PolicyCountersLoadTest, SlotCountOutsideItsRangeIsRefused) {
  BpfLoadOptions options;
  options.policy_counter_slots = 1;  // only slot 0, which means "not counted"
  absl::StatusOr<std::unique_ptr<BpfObjects>> loaded = BpfObjects::Load(options);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("between 2 and"), std::string::npos)
      << loaded.status();
}

// A restart keeps every entry's slot and count. An upgrade from a version
// that counted in the policy_stats hash finds entries without a slot: they
// get one in place, with their count from that hash, whose pin then goes.
TEST_F(PolicyCountersTest, RestartKeepsSlotsAndAdoptsEntriesOfAnEarlierVersion) {
  testing::ScopedBpfDir pins("policy-counters");
  BpfLoadOptions options;
  options.pin_dir = pins.path();
  Load(options);
  SetPolicy(kEndpointId, IngressIsolated({AllowTcp(80, 1), AllowTcp(81, 2)}));
  ASSERT_EQ(Connect(80, 2), 2);
  ASSERT_EQ(Connect(81, 1), 1);

  // What an earlier version would have left: rule 2's entry without a slot,
  // its count (5 packets on CPU 0) in a pinned policy_stats hash.
  ebpfcni_policy_key key{};
  key.peer_identity = kPeerIdentity;
  key.direction = EBPFCNI_POLICY_INGRESS;
  key.protocol = kProtoTcp;
  key.dport = htons(81);
  {
    uint32_t endpoint_id = kEndpointId, inner_id = 0;
    ASSERT_EQ(bpf_map_lookup_elem(bpf_->policy_maps_fd(), &endpoint_id, &inner_id), 0);
    ScopedFd inner(bpf_map_get_fd_by_id(inner_id));
    ASSERT_GE(inner.get(), 0);
    ebpfcni_policy_value value{};
    ASSERT_EQ(bpf_map_lookup_elem(inner.get(), &key, &value), 0);
    value.counter_slot = EBPFCNI_POLICY_COUNTER_NONE;
    ASSERT_EQ(bpf_map_update_elem(inner.get(), &key, &value, BPF_EXIST), 0);

    LIBBPF_OPTS(bpf_map_create_opts, create, .map_flags = BPF_F_NO_PREALLOC);
    ScopedFd legacy(bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "policy_stats",
                                   sizeof(ebpfcni_policy_stats_key),
                                   sizeof(ebpfcni_packet_counter), 1024, &create));
    ASSERT_GE(legacy.get(), 0) << std::strerror(errno);
    std::vector<ebpfcni_packet_counter> per_cpu(libbpf_num_possible_cpus());
    per_cpu[0] = {5, 500};
    ebpfcni_policy_stats_key legacy_key{kEndpointId, key};
    ASSERT_EQ(bpf_map_update_elem(legacy.get(), &legacy_key, per_cpu.data(), BPF_ANY), 0);
    ASSERT_EQ(bpf_obj_pin(legacy.get(), (pins.path() + "/policy_stats").c_str()), 0);
  }

  Load(options);  // the restart
  EXPECT_EQ(Packets(kEndpointId), (std::map<uint32_t, uint64_t>{{1, 2}, {2, 5}}));
  EXPECT_FALSE(std::filesystem::exists(pins.path() + "/policy_stats"));
  ASSERT_EQ(Connect(81, 1), 1);
  ASSERT_EQ(Connect(80, 1), 1);
  EXPECT_EQ(Packets(kEndpointId), (std::map<uint32_t, uint64_t>{{1, 3}, {2, 6}}));
  // Both entries hold distinct slots the allocator knows are taken.
  EXPECT_EQ(bpf_->policy_counter_slots().available(),
            bpf_->policy_counter_slots().capacity() - 1 - 2);
  ASSERT_TRUE(policy_->Clear(kEndpointId).ok());
  bpf_.reset();
}

}  // namespace
}  // namespace ebpfcni::datapath
