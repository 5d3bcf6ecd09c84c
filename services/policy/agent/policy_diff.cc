#include "services/policy/agent/policy_diff.h"

#include <map>
#include <tuple>

#include <absl/strings/str_cat.h>

#include "services/policy/agent/trace_explanation.h"

namespace ebpfcni::policy {
namespace {

using RuleKey = std::tuple<int, uint32_t, uint32_t, uint32_t, uint32_t>;

RuleKey KeyOf(const datapath::v1::PolicyRule& rule) {
  return {rule.direction(), rule.peer_identity(), rule.protocol(), rule.port(), rule.end_port()};
}

const char* OnOff(bool value) { return value ? "on" : "off"; }

}  // namespace

std::string PolicyRuleText(const datapath::v1::PolicyRule& rule) {
  std::string what;
  if (rule.protocol() == 0) {
    what = "any protocol";
  } else if (rule.port() == 0) {
    what = absl::StrCat(ProtocolText(rule.protocol()), " any port");
  } else {
    what = ProtocolPortText(rule.protocol(), rule.port());
    if (rule.end_port() != 0) absl::StrAppend(&what, "-", rule.end_port());
  }
  return absl::StrCat(rule.action() == datapath::v1::POLICY_ACTION_DENY ? "deny " : "allow ",
                      rule.direction() == datapath::v1::POLICY_DIRECTION_EGRESS ? "egress" : "ingress",
                      " id=", rule.peer_identity() == 0 ? std::string("any") : absl::StrCat(rule.peer_identity()),
                      " ", what, " (rule ", rule.rule_id(), ")");
}

std::vector<std::string> DiffEndpointPolicy(const datapath::v1::EndpointPolicy& compiled,
                                            const datapath::v1::DumpPolicyResponse& kernel) {
  std::vector<std::string> differences;
  const bool installed = kernel.policy().installed();
  const bool kernel_ingress = installed && kernel.policy().ingress_isolated();
  const bool kernel_egress = installed && kernel.policy().egress_isolated();
  if (kernel_ingress != compiled.ingress_isolated()) {
    differences.push_back(
        absl::StrCat("ingress isolation: kernel ", OnOff(kernel_ingress), ", compiled ", OnOff(compiled.ingress_isolated())));
  }
  if (kernel_egress != compiled.egress_isolated()) {
    differences.push_back(
        absl::StrCat("egress isolation: kernel ", OnOff(kernel_egress), ", compiled ", OnOff(compiled.egress_isolated())));
  }
  std::map<RuleKey, datapath::v1::PolicyRule> in_kernel;
  for (const auto& entry : kernel.entries()) in_kernel[KeyOf(entry.rule())] = entry.rule();
  for (const auto& rule : compiled.rules()) {
    auto it = in_kernel.find(KeyOf(rule));
    if (it == in_kernel.end()) {
      differences.push_back("missing " + PolicyRuleText(rule));
      continue;
    }
    const auto& have = it->second;
    const bool same_action = (have.action() == rule.action()) ||
                             (rule.action() == datapath::v1::POLICY_ACTION_UNSPECIFIED &&
                              have.action() == datapath::v1::POLICY_ACTION_ALLOW);
    if (!same_action || have.rule_id() != rule.rule_id()) {
      differences.push_back(absl::StrCat("kernel has ", PolicyRuleText(have), ", compiled ", PolicyRuleText(rule)));
    }
    in_kernel.erase(it);
  }
  for (const auto& [key, rule] : in_kernel) differences.push_back("unexpected " + PolicyRuleText(rule));
  return differences;
}

}  // namespace ebpfcni::policy
