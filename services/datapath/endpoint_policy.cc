#include "services/datapath/endpoint_policy.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"

namespace ebpfcni::datapath {
namespace {

constexpr uint8_t kIcmp = 1;
constexpr uint8_t kIcmpV6 = 58;

// Sorted, merged [first, last] intervals.
using Intervals = std::vector<std::pair<uint32_t, uint32_t>>;

Intervals Union(Intervals intervals) {
  std::sort(intervals.begin(), intervals.end());
  Intervals merged;
  for (const auto& interval : intervals) {
    if (!merged.empty() && interval.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, interval.second);
    } else {
      merged.push_back(interval);
    }
  }
  return merged;
}

// A port both unions contain, if any.
std::optional<uint32_t> CommonPort(const Intervals& a, const Intervals& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    uint32_t low = std::max(a[i].first, b[j].first);
    uint32_t high = std::min(a[i].second, b[j].second);
    if (low <= high) return low;
    if (a[i].second < b[j].second) {
      ++i;
    } else {
      ++j;
    }
  }
  return std::nullopt;
}

}  // namespace

std::string DescribeRule(const PolicyRule& rule) {
  std::string peer =
      rule.peer_identity == 0 ? "any peer" : absl::StrCat("peer ", rule.peer_identity);
  std::string ports = rule.port == 0 ? std::string("any") : absl::StrCat(rule.port);
  if (rule.is_range()) absl::StrAppend(&ports, "-", rule.end_port);
  std::string what = rule.protocol == 0 && !rule.is_range()
                         ? (rule.port == 0 ? std::string("any protocol")
                                           : absl::StrCat("any protocol/", ports))
                         : absl::StrCat("protocol ", rule.protocol, "/", ports);
  return absl::StrCat(rule.direction == PolicyDirection::kIngress ? "ingress" : "egress", " ",
                      rule.action == PolicyAction::kAllow ? "allow" : "deny", " ", peer, " ",
                      what, " (rule ", rule.rule_id, ")");
}

std::vector<PortBlock> SplitPortRange(uint16_t first, uint16_t last) {
  std::vector<PortBlock> blocks;
  uint32_t port = first;
  while (port <= last) {
    // The largest block that starts at `port` (aligned) and ends by `last`.
    uint8_t prefix_length = 16;
    while (prefix_length > 0) {
      uint32_t size = 1u << (16 - (prefix_length - 1));
      if (port % size != 0 || port + size - 1 > last) break;
      --prefix_length;
    }
    PortBlock block{static_cast<uint16_t>(port), prefix_length};
    blocks.push_back(block);
    port = block.last() + 1;
  }
  return blocks;
}

absl::Status ValidatePolicy(const EndpointPolicy& policy) {
  std::set<std::tuple<PolicyDirection, uint32_t, uint8_t, uint16_t, uint16_t>> keys;
  // Ports of ranges per (direction, peer, protocol) and action, to find
  // overlapping ranges that disagree.
  std::map<std::tuple<PolicyDirection, uint32_t, uint8_t>, std::map<PolicyAction, Intervals>>
      ranges;
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
    uint32_t highest = rule.is_range() ? rule.end_port : rule.port;
    if ((rule.protocol == kIcmp || rule.protocol == kIcmpV6) && highest > 255) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": for ICMP the port is the ICMP type, 0..255"));
    }
    if (rule.is_range()) {
      if (rule.protocol == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": a port range needs a protocol (set protocol, e.g. 6 for TCP)"));
      }
      if (rule.port == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": end_port needs a non-zero port, the first port of the range"));
      }
      if (rule.end_port < rule.port) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": end_port ", rule.end_port, " is below port ", rule.port,
            "; a range is [port, end_port]"));
      }
      ranges[{rule.direction, rule.peer_identity, rule.protocol}][rule.action].emplace_back(
          rule.port, rule.end_port);
    }
    if (!keys.emplace(rule.direction, rule.peer_identity, rule.protocol, rule.port,
                      rule.end_port)
             .second) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": another rule has the same direction, peer, protocol and ports; "
                 "merge them (one key holds one action)"));
    }
  }
  for (auto& [group, by_action] : ranges) {
    if (by_action.size() < 2) continue;
    Intervals allowed = Union(by_action[PolicyAction::kAllow]);
    Intervals denied = Union(by_action[PolicyAction::kDeny]);
    if (std::optional<uint32_t> port = CommonPort(allowed, denied); port.has_value()) {
      const auto& [direction, peer, protocol] = group;
      return absl::InvalidArgumentError(absl::StrCat(
          direction == PolicyDirection::kIngress ? "ingress" : "egress", " port ranges of ",
          peer == 0 ? std::string("any peer") : absl::StrCat("peer ", peer), ", protocol ",
          protocol, " both allow and deny port ", *port,
          "; overlapping ranges must have the same action (split them, or use an exact-port "
          "rule, which takes precedence over ranges)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace ebpfcni::datapath
