#include "services/policy/agent/trace_explanation.h"

#include <vector>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

namespace ebpfcni::policy {
namespace {

std::string RuleText(const v1::RuleRef& rule) {
  const char* direction = rule.direction() == datapath::v1::POLICY_DIRECTION_EGRESS ? "egress" : "ingress";
  if (rule.policy_namespace().empty()) {
    // Implicit rule: its name is its description.
    return absl::StrCat("the implicit rule \"", rule.policy_name(), "\" (rule id ", rule.rule_id(), ")");
  }
  return absl::StrCat(rule.policy_namespace(), "/", rule.policy_name(), " ", direction, " rule #", rule.rule_index(),
                      " (rule id ", rule.rule_id(), ")");
}

std::string PeerText(const TraceSide& side) {
  return absl::StrCat(side.name, " (identity ", side.identity, ")");
}

}  // namespace

std::string ProtocolText(uint32_t protocol) {
  switch (protocol) {
    case 0:
      return "any protocol";
    case 1:
      return "ICMP";
    case 6:
      return "TCP";
    case 17:
      return "UDP";
    case 58:
      return "ICMPv6";
    case 132:
      return "SCTP";
    default:
      return absl::StrCat("protocol ", protocol);
  }
}

std::string ProtocolPortText(uint32_t protocol, uint32_t port) {
  if (protocol == 6 || protocol == 17 || protocol == 132) return absl::StrCat(ProtocolText(protocol), "/", port);
  return ProtocolText(protocol);
}

std::string ExplainTrace(const TraceSide& source, const TraceSide& destination, uint32_t protocol, uint32_t port,
                         const v1::DirectionVerdict& egress, const v1::DirectionVerdict& ingress) {
  const std::string what = ProtocolPortText(protocol, port);
  std::vector<std::string> denials;
  if (egress.decision() == v1::DECISION_DENIED_DEFAULT) {
    denials.push_back(absl::StrCat(source.name, " is isolated for egress by ",
                                   absl::StrJoin(egress.isolating_policies(), ", "), " and no rule allows ",
                                   PeerText(destination), " on ", what));
  }
  if (ingress.decision() == v1::DECISION_DENIED_DEFAULT) {
    denials.push_back(absl::StrCat(destination.name, " is isolated for ingress by ",
                                   absl::StrJoin(ingress.isolating_policies(), ", "), " and no rule allows ",
                                   PeerText(source), " on ", what));
  }
  if (!denials.empty()) return absl::StrCat("denied: ", absl::StrJoin(denials, "; and "));

  auto side_text = [&](const v1::DirectionVerdict& verdict, const TraceSide& side, const char* direction) {
    switch (verdict.decision()) {
      case v1::DECISION_ALLOWED_BY_RULE:
        return absl::StrCat(side.name, " ", direction, " allowed by ",
                            verdict.allowing_rules().empty() ? std::string("a rule")
                                                             : RuleText(verdict.allowing_rules(0)));
      case v1::DECISION_ALLOWED_NOT_ISOLATED:
        return absl::StrCat(side.name, " is not isolated for ", direction, " (no NetworkPolicy selects it)");
      case v1::DECISION_NOT_ENFORCED_HERE:
        return absl::StrCat(side.name, " ", direction, " is not enforced on this node");
      default:
        return absl::StrCat(side.name, " ", direction, ": unknown");
    }
  };
  return absl::StrCat("allowed on ", what, ": ", side_text(egress, source, "egress"), "; ",
                      side_text(ingress, destination, "ingress"));
}

}  // namespace ebpfcni::policy
