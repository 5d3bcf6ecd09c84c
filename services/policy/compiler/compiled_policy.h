#pragma once
// An endpoint's compiled policy in the datapath's terms: per direction,
// whether it is isolated, and the allow entries (peer identity, protocol,
// destination port range) each tagged with the rule id that produced it.
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "ebpfcni/datapath/v1/datapath.pb.h"

namespace ebpfcni::policy {

enum class Direction { kIngress, kEgress };

std::string_view DirectionName(Direction direction);  // "ingress" / "egress"
ebpfcni::datapath::v1::PolicyDirection ToProtoDirection(Direction direction);

struct CompiledRule {
  Direction direction = Direction::kIngress;
  uint32_t peer_identity = 0;  // 0 = any identity
  uint8_t protocol = 0;        // 0 = any protocol
  uint16_t port = 0;           // 0 = any port
  uint16_t end_port = 0;       // 0 = the single port `port`
  uint32_t rule_id = 0;        // non-zero

  // The datapath's key of the entry: rules are unique by it.
  auto Key() const { return std::tie(direction, peer_identity, protocol, port, end_port); }
  // Does this entry allow a packet to/from `peer` with `protocol`/`port`?
  bool Allows(uint32_t peer, uint8_t packet_protocol, uint16_t packet_port) const;
  std::string ToString() const;  // "ingress id=301 TCP/80-90 (rule 17)"

  bool operator==(const CompiledRule&) const = default;
};

struct CompiledEndpointPolicy {
  bool ingress_isolated = false, egress_isolated = false;
  std::vector<CompiledRule> rules;  // sorted, unique by (direction, peer, protocol, port, end_port)

  // Allow entries; not-isolated directions carry no entries.
  ebpfcni::datapath::v1::EndpointPolicy ToProto() const;
  bool operator==(const CompiledEndpointPolicy&) const = default;
};

}  // namespace ebpfcni::policy
