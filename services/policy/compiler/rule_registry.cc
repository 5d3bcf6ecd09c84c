#include "services/policy/compiler/rule_registry.h"

#include <absl/strings/str_cat.h>

namespace ebpfcni::policy {

RuleRegistry::RuleRegistry() {
  by_id_[kNodeTrafficRuleId] = RuleInfo{kNodeTrafficRuleId, "", "", Direction::kIngress, 0,
                                        "node traffic to its pods is always allowed"};
  by_id_[kPodToNodeTrafficRuleId] = RuleInfo{kPodToNodeTrafficRuleId, "", "", Direction::kEgress, 0,
                                             "pod traffic to its node is always allowed"};
}

uint32_t RuleRegistry::IdFor(const std::string& policy_namespace, const std::string& policy_name,
                             Direction direction, uint32_t index) {
  Key key{policy_namespace, policy_name, direction, index};
  auto it = by_key_.find(key);
  if (it != by_key_.end()) return it->second;
  uint32_t id = next_id_++;
  by_key_.emplace(std::move(key), id);
  by_id_[id] = RuleInfo{id, policy_namespace, policy_name, direction, index,
                        absl::StrCat(policy_namespace, "/", policy_name, " ", std::string(DirectionName(direction)),
                                     "[", index, "]")};
  return id;
}

void RuleRegistry::Release(const std::string& policy_namespace, const std::string& policy_name, Direction direction,
                           uint32_t keep) {
  auto it = by_key_.lower_bound(Key{policy_namespace, policy_name, direction, keep});
  while (it != by_key_.end() && std::get<0>(it->first) == policy_namespace &&
         std::get<1>(it->first) == policy_name && std::get<2>(it->first) == direction) {
    by_id_.erase(it->second);
    it = by_key_.erase(it);
  }
}

std::optional<RuleInfo> RuleRegistry::Describe(uint32_t rule_id) const {
  auto it = by_id_.find(rule_id);
  if (it == by_id_.end()) return std::nullopt;
  return it->second;
}

std::vector<RuleInfo> RuleRegistry::RulesOf(const std::string& policy_namespace, const std::string& policy_name) const {
  std::vector<RuleInfo> rules;
  for (auto it = by_key_.lower_bound(Key{policy_namespace, policy_name, Direction::kIngress, 0});
       it != by_key_.end() && std::get<0>(it->first) == policy_namespace && std::get<1>(it->first) == policy_name;
       ++it) {
    rules.push_back(by_id_.at(it->second));
  }
  return rules;
}

}  // namespace ebpfcni::policy
