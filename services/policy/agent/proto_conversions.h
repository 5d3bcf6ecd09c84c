#pragma once
// Conversions between the compiler's types and the policy/datapath protos.
#include "ebpfcni/datapath/v1/datapath.pb.h"
#include "ebpfcni/policy/v1/policy.pb.h"
#include "services/policy/compiler/policy_engine.h"

namespace ebpfcni::policy {

inline EndpointKey FromProtoKey(const datapath::v1::EndpointKey& key) {
  return EndpointKey{key.container_id(), key.interface_name()};
}

inline datapath::v1::EndpointKey ToProtoKey(const EndpointKey& key) {
  datapath::v1::EndpointKey out;
  out.set_container_id(key.container_id);
  out.set_interface_name(key.interface_name);
  return out;
}

// Implicit rules have no policy: their description stands in its name so a
// listing or an event still says what allowed the packet.
inline v1::RuleRef ToRuleRef(const RuleInfo& info) {
  v1::RuleRef ref;
  ref.set_rule_id(info.rule_id);
  ref.set_policy_namespace(info.policy_namespace);
  ref.set_policy_name(info.implicit() ? info.description : info.policy_name);
  ref.set_direction(ToProtoDirection(info.direction));
  ref.set_rule_index(info.rule_index);
  return ref;
}

inline v1::Decision ToProtoDecision(TraceDecision decision) {
  switch (decision) {
    case TraceDecision::kAllowedByRule:
      return v1::DECISION_ALLOWED_BY_RULE;
    case TraceDecision::kAllowedNotIsolated:
      return v1::DECISION_ALLOWED_NOT_ISOLATED;
    case TraceDecision::kDeniedDefault:
      return v1::DECISION_DENIED_DEFAULT;
  }
  return v1::DECISION_UNSPECIFIED;
}

}  // namespace ebpfcni::policy
