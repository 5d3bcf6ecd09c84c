// ReplaceEndpointPolicies: many endpoints' policies swapped in one batch
// (one RCU grace period), against the real kernel. Every endpoint of a batch
// gets its own policy (dumped back, traced), items that cannot apply fail
// alone with their own code, watchers hear of every change, and the stored
// copies survive a restart that lost the pinned policy maps.
#include <unistd.h>

#include <memory>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include <absl/strings/str_cat.h>
#include <absl/time/time.h>
#include <gtest/gtest.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/endpoint_manager.h"
#include "services/datapath/endpoint_policy.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

constexpr int kEndpoints = 4;
constexpr uint32_t kPodIdentity = 1000;
constexpr uint32_t kPeerIdentity = 4000;  // 10.98.0.0/16
constexpr uint8_t kTcp = 6;

IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }

std::string PodAddress(int i) { return absl::StrCat("10.252.", i, ".2"); }
EndpointKey KeyOf(int i) { return {absl::StrCat("ctr-batch-", i), "eth0"}; }

// Endpoint i allows TCP port 8000 + i from the peer, nothing else.
EndpointPolicy PolicyFor(int i, uint16_t base_port = 8000) {
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.rules = {PolicyRule{PolicyDirection::kIngress, kPeerIdentity, kTcp,
                             static_cast<uint16_t>(base_port + i), PolicyAction::kAllow,
                             static_cast<uint32_t>(100 + i)}};
  return policy;
}

class PolicyBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < kEndpoints; ++i) {
      pods_.push_back(std::make_unique<testing::ScopedVethPair>(absl::StrCat("pb", i),
                                                                PodAddress(i) + "/30"));
      ASSERT_TRUE(pods_.back()->ok());
    }
    StartManager();
    for (int i = 0; i < kEndpoints; ++i) {
      EndpointRecord record;
      record.key = KeyOf(i);
      record.host_ifindex = pods_[i]->host_ifindex();
      record.addresses = {PodAddress(i)};
      record.identity = kPodIdentity;
      absl::StatusOr<EndpointStatus> created = manager_->CreateEndpoint(record);
      ASSERT_TRUE(created.ok()) << created.status();
    }
    ASSERT_TRUE(
        manager_->UpsertPrefixIdentities({{*IpPrefix::Parse("10.98.0.0/16"), kPeerIdentity}})
            .ok());
  }

  void StartManager() {
    manager_.reset();
    EndpointManagerOptions options;
    options.bpf_dir = bpf_dir_.path();
    options.state_dir = state_dir_.path();
    options.map_host_addresses = false;
    options.prefill_spares = 0;
    absl::StatusOr<std::unique_ptr<EndpointManager>> manager = EndpointManager::Start(options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = *std::move(manager);
  }

  // What the ingress program of endpoint i does with a new TCP flow from
  // the peer to `port`: "allow <rule>", "open" (not isolated), "deny".
  std::string IngressDecision(int i, uint16_t port) {
    TraceSpec spec;
    spec.source = Ip("10.98.1.1");
    spec.destination = Ip(PodAddress(i));
    spec.protocol = kTcp;
    spec.source_port = 40000;
    spec.destination_port = port;
    absl::StatusOr<std::vector<TraceHop>> hops = manager_->Trace(spec);
    if (!hops.ok()) return hops.status().ToString();
    if (hops->size() != 1) return absl::StrCat(hops->size(), " hops");
    const TraceResult& result = (*hops)[0].result;
    if (result.verdict == EBPFCNI_VERDICT_ALLOWED_POLICY) {
      return absl::StrCat("allow ", result.rule_id);
    }
    if (result.verdict == EBPFCNI_VERDICT_ALLOWED_NOT_ISOLATED) return "open";
    if (result.verdict == EBPFCNI_VERDICT_DROPPED &&
        result.reason == EBPFCNI_DROP_POLICY_DEFAULT_DENY) {
      return "deny";
    }
    return absl::StrCat("verdict ", result.verdict, " reason ", result.reason);
  }

  std::optional<EndpointPolicy> Dumped(int i) {
    absl::StatusOr<PolicyDump> dump = manager_->DumpPolicy(KeyOf(i));
    EXPECT_TRUE(dump.ok()) << dump.status();
    if (!dump.ok() || !dump->summary.installed) return std::nullopt;
    EndpointPolicy policy;
    policy.ingress_isolated = dump->summary.ingress_isolated;
    policy.egress_isolated = dump->summary.egress_isolated;
    policy.verdict_events = dump->summary.verdict_events;
    for (const PolicyEntryCounters& entry : dump->entries) policy.rules.push_back(entry.rule);
    return policy;
  }

  testing::ScopedBpfDir bpf_dir_{"batch"};
  testing::ScopedTempDir state_dir_{"batch-state"};
  std::vector<std::unique_ptr<testing::ScopedVethPair>> pods_;
  std::unique_ptr<EndpointManager> manager_;
};

TEST_F(PolicyBatchTest, EveryEndpointOfTheBatchGetsItsPolicyAndVerdictsSwitch) {
  for (int i = 0; i < kEndpoints; ++i) {
    EXPECT_EQ(IngressDecision(i, 8000 + i), "open") << "no policy yet, endpoint " << i;
  }
  std::vector<EndpointManager::PolicyReplacement> batch;
  for (int i = 0; i < kEndpoints; ++i) batch.push_back({KeyOf(i), PolicyFor(i)});
  std::vector<absl::StatusOr<PolicySummary>> results = manager_->ReplaceEndpointPolicies(batch);
  ASSERT_EQ(results.size(), batch.size());
  for (int i = 0; i < kEndpoints; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    EXPECT_TRUE(results[i]->installed);
    EXPECT_TRUE(results[i]->ingress_isolated);
    EXPECT_EQ(results[i]->rule_count, 1u);
    EXPECT_EQ(Dumped(i), PolicyFor(i)) << "endpoint " << i;
    EXPECT_EQ(IngressDecision(i, 8000 + i), absl::StrCat("allow ", 100 + i)) << i;
    // Another endpoint's port: each endpoint has its own policy, not a mix.
    EXPECT_EQ(IngressDecision(i, 8000 + (i + 1) % kEndpoints), "deny") << i;
  }

  // A second batch moves every endpoint to new ports; a third removes all.
  batch.clear();
  for (int i = 0; i < kEndpoints; ++i) batch.push_back({KeyOf(i), PolicyFor(i, 9000)});
  for (const auto& result : manager_->ReplaceEndpointPolicies(batch)) {
    ASSERT_TRUE(result.ok()) << result.status();
  }
  for (int i = 0; i < kEndpoints; ++i) {
    EXPECT_EQ(IngressDecision(i, 8000 + i), "deny") << i;
    EXPECT_EQ(IngressDecision(i, 9000 + i), absl::StrCat("allow ", 100 + i)) << i;
  }
  batch.clear();
  for (int i = 0; i < kEndpoints; ++i) batch.push_back({KeyOf(i), std::nullopt});
  for (const auto& result : manager_->ReplaceEndpointPolicies(batch)) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_FALSE(result->installed);
  }
  for (int i = 0; i < kEndpoints; ++i) {
    EXPECT_EQ(IngressDecision(i, 8000 + i), "open") << i;
    EXPECT_EQ(Dumped(i), std::nullopt) << i;
  }
}

TEST_F(PolicyBatchTest, ItemsThatCannotApplyFailAloneWithTheirOwnCode) {
  // Endpoint 1 starts with a policy that the invalid item must not disturb.
  ASSERT_TRUE(manager_->ReplaceEndpointPolicy(KeyOf(1), PolicyFor(1)).ok());

  EndpointPolicy invalid = PolicyFor(1, 9000);
  invalid.rules[0].protocol = 0;  // a port without a protocol
  EndpointPolicy too_big;
  too_big.ingress_isolated = true;
  for (uint32_t peer = 0; peer < 40000; ++peer) {
    PolicyRule rule{PolicyDirection::kIngress, 100000 + peer, kTcp, 1, PolicyAction::kAllow,
                    peer + 1};
    rule.end_port = 65534;
    too_big.rules.push_back(rule);
  }
  std::vector<EndpointManager::PolicyReplacement> batch = {
      {KeyOf(0), PolicyFor(0)},
      {{"ctr-batch-missing", "eth0"}, PolicyFor(0)},
      {KeyOf(1), invalid},
      {KeyOf(0), PolicyFor(0, 9000)},  // endpoint 0 a second time
      {KeyOf(2), too_big},
      {KeyOf(3), PolicyFor(3)},
  };
  std::vector<absl::StatusOr<PolicySummary>> results = manager_->ReplaceEndpointPolicies(batch);
  ASSERT_EQ(results.size(), batch.size());
  EXPECT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kNotFound) << results[1].status();
  EXPECT_NE(results[1].status().message().find("ctr-batch-missing"), std::string::npos);
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kInvalidArgument) << results[2].status();
  EXPECT_NE(results[2].status().message().find("ctr-batch-1"), std::string::npos)
      << results[2].status();
  EXPECT_EQ(results[3].status().code(), absl::StatusCode::kInvalidArgument) << results[3].status();
  EXPECT_NE(results[3].status().message().find("more than once"), std::string::npos);
  EXPECT_EQ(results[4].status().code(), absl::StatusCode::kResourceExhausted)
      << results[4].status();
  EXPECT_TRUE(results[5].ok()) << results[5].status();

  EXPECT_EQ(IngressDecision(0, 8000), "allow 100") << "the first item for endpoint 0 applies";
  EXPECT_EQ(Dumped(0), PolicyFor(0));
  EXPECT_EQ(Dumped(1), PolicyFor(1)) << "the invalid item left the old policy";
  EXPECT_EQ(IngressDecision(1, 8001), "allow 101");
  EXPECT_EQ(Dumped(2), std::nullopt) << "too big: nothing installed";
  EXPECT_EQ(IngressDecision(2, 8002), "open");
  EXPECT_EQ(Dumped(3), PolicyFor(3));
  EXPECT_EQ(IngressDecision(3, 8003), "allow 103");
}

TEST_F(PolicyBatchTest, WatchersHearEveryEndpointOfTheBatch) {
  std::shared_ptr<EndpointWatch> watch = manager_->Watch(64);
  std::vector<EndpointManager::PolicyReplacement> batch;
  for (int i = 0; i < kEndpoints; ++i) batch.push_back({KeyOf(i), PolicyFor(i)});
  for (const auto& result : manager_->ReplaceEndpointPolicies(batch)) {
    ASSERT_TRUE(result.ok()) << result.status();
  }
  std::set<std::string> updated;
  for (int n = 0; n < kEndpoints; ++n) {
    absl::StatusOr<std::optional<EndpointChange>> change = watch->Next(absl::Seconds(5));
    ASSERT_TRUE(change.ok()) << change.status();
    ASSERT_TRUE(change->has_value()) << "only " << n << " changes";
    EXPECT_EQ((*change)->type, EndpointChangeType::kUpdated);
    EXPECT_TRUE((*change)->endpoint.policy.installed);
    EXPECT_EQ((*change)->endpoint.policy.rule_count, 1u);
    updated.insert((*change)->endpoint.record.key.container_id);
  }
  EXPECT_EQ(updated.size(), static_cast<size_t>(kEndpoints));
  manager_->Unwatch(watch);
}

TEST_F(PolicyBatchTest, StoredCopiesPutThePoliciesBackWhenThePinsAreLost) {
  std::vector<EndpointManager::PolicyReplacement> batch;
  for (int i = 0; i < kEndpoints; ++i) {
    batch.push_back({KeyOf(i), i == 0 ? std::nullopt : std::optional(PolicyFor(i))});
  }
  for (const auto& result : manager_->ReplaceEndpointPolicies(batch)) {
    ASSERT_TRUE(result.ok()) << result.status();
  }
  manager_.reset();
  // As after an upgrade that changed the policy map's layout: the pin is
  // gone, only the SQLite copies (written by the batch) know the policies.
  ASSERT_EQ(unlink((bpf_dir_.path() + "/policy_maps").c_str()), 0);
  StartManager();
  EXPECT_EQ(Dumped(0), std::nullopt);
  for (int i = 1; i < kEndpoints; ++i) {
    EXPECT_EQ(Dumped(i), PolicyFor(i)) << i;
    EXPECT_EQ(IngressDecision(i, 8000 + i), absl::StrCat("allow ", 100 + i)) << i;
  }
}

}  // namespace
}  // namespace ebpfcni::datapath
