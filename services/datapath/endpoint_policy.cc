#include "services/datapath/endpoint_policy.h"

#include <set>
#include <tuple>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"

namespace ebpfcni::datapath {
namespace {

constexpr uint8_t kIcmp = 1;
constexpr uint8_t kIcmpV6 = 58;

}  // namespace

std::string DescribeRule(const PolicyRule& rule) {
  std::string peer =
      rule.peer_identity == 0 ? "any peer" : absl::StrCat("peer ", rule.peer_identity);
  std::string what = rule.protocol == 0 ? "any protocol"
                                        : absl::StrCat("protocol ", rule.protocol, "/",
                                                       rule.port == 0 ? std::string("any")
                                                                      : absl::StrCat(rule.port));
  return absl::StrCat(rule.direction == PolicyDirection::kIngress ? "ingress" : "egress", " ",
                      rule.action == PolicyAction::kAllow ? "allow" : "deny", " ", peer, " ",
                      what, " (rule ", rule.rule_id, ")");
}

absl::Status ValidatePolicy(const EndpointPolicy& policy) {
  if (policy.rules.size() >= EBPFCNI_POLICY_MAX_ENTRIES) {
    return absl::InvalidArgumentError(absl::StrCat("policy has ", policy.rules.size(),
                                                   " rules; at most ",
                                                   EBPFCNI_POLICY_MAX_ENTRIES - 1,
                                                   " fit an endpoint's policy map"));
  }
  std::set<std::tuple<PolicyDirection, uint32_t, uint8_t, uint16_t>> keys;
  for (size_t i = 0; i < policy.rules.size(); ++i) {
    const PolicyRule& rule = policy.rules[i];
    std::string where = absl::StrCat("rules[", i, "] (", DescribeRule(rule), ")");
    if (rule.rule_id == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": rule_id must be non-zero (0 means default deny in events)"));
    }
    if (rule.port != 0 && rule.protocol == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": a port needs a protocol (set protocol, e.g. 6 for TCP)"));
    }
    if ((rule.protocol == kIcmp || rule.protocol == kIcmpV6) && rule.port > 255) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": for ICMP the port is the ICMP type, 0..255"));
    }
    if (!keys.emplace(rule.direction, rule.peer_identity, rule.protocol, rule.port).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": another rule has the same direction, peer, protocol and port; "
                 "merge them (one key holds one action)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ebpfcni::datapath
