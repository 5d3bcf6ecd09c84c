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
  // Inclusive end of the port range [port, end_port]; 0 = just `port`.
  // (A range of one port, end_port == port, is kept as a range.)
  uint16_t end_port = 0;
  bool operator==(const PolicyRule&) const = default;

  bool is_range() const { return end_port != 0; }
};

struct EndpointPolicy {
  bool ingress_isolated = false;
  bool egress_isolated = false;
  bool verdict_events = false;
  std::vector<PolicyRule> rules;
  bool operator==(const EndpointPolicy&) const = default;
};

// INVALID_ARGUMENT naming the offending rule when a rule has a port
// without a protocol, an ICMP type above 255, a zero rule id, a range
// without a start port or ending below it, when two rules share a key
// (direction, peer, protocol, port, end_port), or when overlapping ranges of
// the same direction, peer and protocol have different actions (which one
// applies would depend on how the ranges split into blocks).
absl::Status ValidatePolicy(const EndpointPolicy& policy);

// "ingress allow peer 300 protocol 6/80-90 (rule 7)", for logs and errors.
std::string DescribeRule(const PolicyRule& rule);

// An aligned block of 2^(16 - prefix_length) ports starting at `first`.
struct PortBlock {
  uint16_t first = 0;
  uint8_t prefix_length = 16;
  uint32_t last() const { return first + (1u << (16 - prefix_length)) - 1; }
  bool operator==(const PortBlock&) const = default;
};

// The fewest aligned blocks that cover [first, last] exactly (at most 30
// for 1..65535), in port order.
std::vector<PortBlock> SplitPortRange(uint16_t first, uint16_t last);

}  // namespace ebpfcni::datapath
