#pragma once
// Rule ids: the non-zero numbers the datapath reports in counters and drop
// events, each standing for one rule of one NetworkPolicy (namespace, name,
// direction, index in spec.ingress/spec.egress) or for an implicit rule.
//
// Ids are stable while the rule exists (a policy update keeps the ids of the
// indexes it still has) and never reused within the process, so an old drop
// event can never be attributed to a different rule.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "services/policy/compiler/compiled_policy.h"

namespace ebpfcni::policy {

// Implicit rules (ids below kFirstPolicyRuleId).
// Kubernetes: "traffic to and from the node where a Pod is running is always
// allowed" — an isolated pod still accepts traffic from its node (reserved
// identity host) and still reaches it (kubelet, node-local DNS caches).
inline constexpr uint32_t kNodeTrafficRuleId = 1;
inline constexpr uint32_t kPodToNodeTrafficRuleId = 2;
inline constexpr uint32_t kFirstPolicyRuleId = 16;

struct RuleInfo {
  uint32_t rule_id = 0;
  std::string policy_namespace, policy_name;  // empty for implicit rules
  Direction direction = Direction::kIngress;
  uint32_t rule_index = 0;
  // "x/allow-web ingress[0]", or for implicit rules
  // "node traffic to its pods is always allowed".
  std::string description;

  bool implicit() const { return policy_name.empty(); }
  bool operator==(const RuleInfo&) const = default;
};

class RuleRegistry {
 public:
  RuleRegistry();

  // The id of rule `index` of `direction` of the policy; allocated on first use.
  uint32_t IdFor(const std::string& policy_namespace, const std::string& policy_name, Direction direction,
                 uint32_t index);
  // Forgets the policy's rules of `direction` at indexes >= `keep` (all of
  // them with keep = 0).
  void Release(const std::string& policy_namespace, const std::string& policy_name, Direction direction,
               uint32_t keep);
  std::optional<RuleInfo> Describe(uint32_t rule_id) const;
  // The policy's rules, ingress first, by index.
  std::vector<RuleInfo> RulesOf(const std::string& policy_namespace, const std::string& policy_name) const;
  size_t size() const { return by_id_.size(); }

 private:
  using Key = std::tuple<std::string, std::string, Direction, uint32_t>;
  std::map<Key, uint32_t> by_key_;
  std::map<uint32_t, RuleInfo> by_id_;
  uint32_t next_id_ = kFirstPolicyRuleId;
};

}  // namespace ebpfcni::policy
