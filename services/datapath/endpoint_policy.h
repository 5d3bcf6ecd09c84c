#pragma once
// An endpoint's policy as the service handles it: isolation per direction
// plus rules keyed by (direction, peer identity, protocol, port), each with
// an action and a rule id. BPF layout: ebpfcni_policy_key/_value in
// bpf/include/ebpfcni/datapath_abi.h.
#include <cstdint>
#include <string>
#include <vector>

#include <absl/status/status.h>

namespace ebpfcni::datapath {

enum class PolicyDirection : uint8_t { kIngress = 1, kEgress = 2 };
enum class PolicyAction : uint8_t { kAllow = 1, kDeny = 2 };

struct PolicyRule {
  PolicyDirection direction = PolicyDirection::kIngress;
  uint32_t peer_identity = 0;  // 0 = any
  uint8_t protocol = 0;        // 0 = any
  uint16_t port = 0;           // host order; ICMP type for ICMP; 0 = any
  PolicyAction action = PolicyAction::kAllow;
  uint32_t rule_id = 0;
  bool operator==(const PolicyRule&) const = default;
};

struct EndpointPolicy {
  bool ingress_isolated = false;
  bool egress_isolated = false;
  bool verdict_events = false;
  std::vector<PolicyRule> rules;
  bool operator==(const EndpointPolicy&) const = default;
};

// INVALID_ARGUMENT naming the offending rule when a rule has a port
// without a protocol, a port out of range, a zero rule id, or when two
// rules share a key (direction, peer, protocol, port).
absl::Status ValidatePolicy(const EndpointPolicy& policy);

// "ingress allow peer 300 tcp/80 (rule 7)", for logs and errors.
std::string DescribeRule(const PolicyRule& rule);

}  // namespace ebpfcni::datapath
