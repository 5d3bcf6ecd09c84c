#include "services/policy/compiler/compiled_policy.h"

#include <absl/strings/str_cat.h>

#include "services/policy/k8s/objects.h"

namespace ebpfcni::policy {

std::string_view DirectionName(Direction direction) {
  return direction == Direction::kIngress ? "ingress" : "egress";
}

ebpfcni::datapath::v1::PolicyDirection ToProtoDirection(Direction direction) {
  return direction == Direction::kIngress ? ebpfcni::datapath::v1::POLICY_DIRECTION_INGRESS
                                          : ebpfcni::datapath::v1::POLICY_DIRECTION_EGRESS;
}

bool CompiledRule::Allows(uint32_t peer, uint8_t packet_protocol, uint16_t packet_port) const {
  if (peer_identity != 0 && peer_identity != peer) return false;
  if (protocol != 0 && protocol != packet_protocol) return false;
  if (port == 0) return true;
  uint16_t last = end_port == 0 ? port : end_port;
  return packet_port >= port && packet_port <= last;
}

std::string CompiledRule::ToString() const {
  std::string peer = peer_identity == 0 ? "any" : absl::StrCat("id=", peer_identity);
  std::string ports;
  if (protocol == 0) {
    ports = "any";
  } else {
    ports = std::string(k8s::ProtocolName(protocol));
    if (port != 0) absl::StrAppend(&ports, "/", port);
    if (end_port != 0) absl::StrAppend(&ports, "-", end_port);
  }
  return absl::StrCat(std::string(DirectionName(direction)), " ", peer, " ", ports, " (rule ", rule_id, ")");
}

ebpfcni::datapath::v1::EndpointPolicy CompiledEndpointPolicy::ToProto() const {
  ebpfcni::datapath::v1::EndpointPolicy proto;
  proto.set_ingress_isolated(ingress_isolated);
  proto.set_egress_isolated(egress_isolated);
  for (const CompiledRule& rule : rules) {
    auto* entry = proto.add_rules();
    entry->set_direction(ToProtoDirection(rule.direction));
    entry->set_peer_identity(rule.peer_identity);
    entry->set_protocol(rule.protocol);
    entry->set_port(rule.port);
    entry->set_end_port(rule.end_port);
    entry->set_action(ebpfcni::datapath::v1::POLICY_ACTION_ALLOW);
    entry->set_rule_id(rule.rule_id);
  }
  return proto;
}

}  // namespace ebpfcni::policy
