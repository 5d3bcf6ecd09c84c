// PolicyAgent's read side: trace, listings, status, verification, events.
// Each takes what it needs from the compiled state under the lock, then
// talks to the datapath without it.
#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "common/grpc/channel.h"
#include "common/grpc/status.h"
#include "services/policy/agent/policy_agent.h"
#include "services/policy/agent/policy_diff.h"
#include "services/policy/agent/proto_conversions.h"
#include "services/policy/agent/trace_explanation.h"

namespace ebpfcni::policy {
namespace {

// One side of a traced connection, resolved.
struct TracedPeer {
  std::string name;                    // "ns/pod" or the IP
  std::vector<IpAddress> addresses;    // candidates (a pod may have v4 and v6)
  std::optional<EndpointKey> local;    // set when the side is an endpoint of this node
  uint32_t identity = 0;
};

absl::Status DatapathError(const std::string& call, const grpc::Status& status) {
  absl::Status inner = FromGrpcStatus(status);
  return absl::Status(inner.code(), absl::StrCat("datapath service ", call, ": ", inner.message()));
}

}  // namespace

std::optional<v1::RuleRef> PolicyAgent::RuleRefLocked(uint32_t rule_id) const {
  if (rule_id == 0) return std::nullopt;
  auto info = engine_.DescribeRule(rule_id);
  if (!info) return std::nullopt;
  return ToRuleRef(*info);
}

std::optional<v1::PodRef> PolicyAgent::PodOfAddressLocked(const std::string& text) const {
  auto address = IpAddress::Parse(text);
  if (!address.ok()) return std::nullopt;
  auto key = engine_.EndpointOfAddress(*address);
  if (!key) return std::nullopt;
  auto it = endpoints_.find(*key);
  if (it == endpoints_.end()) return std::nullopt;
  v1::PodRef pod;
  pod.set_namespace_(it->second.pod_namespace);
  pod.set_name(it->second.pod_name);
  return pod;
}

// --- TracePolicy ------------------------------------------------------------------

absl::StatusOr<v1::TracePolicyResponse> PolicyAgent::TracePolicy(const v1::TracePolicyRequest& request) {
  const uint32_t protocol = request.protocol();
  const uint32_t port = request.port();
  const bool has_ports = protocol == 6 || protocol == 17 || protocol == 132;
  if (!has_ports && protocol != 1 && protocol != 58) {
    return absl::InvalidArgumentError(
        absl::StrCat("protocol ", protocol, " is not traceable: use 6 (TCP), 17 (UDP), 132 (SCTP), 1 or 58 (ICMP)"));
  }
  if (has_ports && (port == 0 || port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("port must be 1-65535 for ", ProtocolText(protocol)));
  }

  v1::TracePolicyResponse response;
  TracedPeer source, destination;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto resolve = [&](const v1::TracePeer& peer, const char* side) -> absl::StatusOr<TracedPeer> {
      TracedPeer out;
      if (peer.has_pod()) {
        const std::string ns = peer.pod().namespace_().empty() ? k8s::kDefaultNamespace : peer.pod().namespace_();
        const std::string& name = peer.pod().name();
        if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(side, ".pod.name is required"));
        out.name = absl::StrCat(ns, "/", name);
        out.local = engine_.EndpointOfPod(ns, name);
        std::vector<std::string> texts;
        if (out.local) {
          const LocalEndpoint& endpoint = endpoints_.at(*out.local);
          texts = endpoint.addresses;
          out.identity = endpoint.identity;
        } else if (const k8s::Pod* pod = engine_.FindPod(ns, name)) {
          texts = pod->pod_ips;
          out.identity = engine_.IdentityOfPod(ns, name);
        } else {
          return absl::NotFoundError(absl::StrCat(side, " pod ", out.name,
                                                  " is neither an endpoint of this node nor a Pod of the cluster "
                                                  "state; check the name, or give its IP"));
        }
        for (const auto& text : texts) {
          if (auto address = IpAddress::Parse(text); address.ok()) out.addresses.push_back(*address);
        }
        if (out.addresses.empty()) {
          return absl::FailedPreconditionError(absl::StrCat(side, " pod ", out.name, " has no IP address yet"));
        }
        if (out.identity == 0 && !out.local) out.identity = engine_.IdentityOfAddress(out.addresses[0]);
      } else if (peer.has_ip()) {
        auto address = IpAddress::Parse(peer.ip());
        if (!address.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(side, ".ip \"", peer.ip(), "\" is not an IP address"));
        }
        out.addresses.push_back(*address);
        out.local = engine_.EndpointOfAddress(*address);
        if (out.local) {
          const LocalEndpoint& endpoint = endpoints_.at(*out.local);
          out.identity = endpoint.identity;
          out.name = absl::StrCat(endpoint.pod_namespace, "/", endpoint.pod_name);
        } else {
          out.identity = engine_.IdentityOfAddress(*address);
          out.name = peer.ip();
        }
      } else {
        return absl::InvalidArgumentError(absl::StrCat(side, " is required: a pod (namespace/name) or an IP"));
      }
      return out;
    };
    auto src = resolve(request.source(), "source");
    if (!src.ok()) return src.status();
    auto dst = resolve(request.destination(), "destination");
    if (!dst.ok()) return dst.status();
    source = std::move(*src);
    destination = std::move(*dst);

    // A connection needs one family on both sides: the first pair that has.
    std::optional<std::pair<IpAddress, IpAddress>> pair;
    for (const auto& s : source.addresses) {
      for (const auto& d : destination.addresses) {
        if (!pair && s.family() == d.family()) pair = {s, d};
      }
    }
    if (!pair) {
      return absl::InvalidArgumentError(
          absl::StrCat(source.name, " and ", destination.name, " have no address of the same IP family"));
    }
    response.set_source_ip(pair->first.ToString());
    response.set_destination_ip(pair->second.ToString());
    response.set_source_identity(source.identity);
    response.set_destination_identity(destination.identity);

    auto verdict = [&](const std::optional<EndpointKey>& local, Direction direction, uint32_t peer_identity,
                       v1::DirectionVerdict* out) {
      if (!local) {
        out->set_decision(v1::DECISION_NOT_ENFORCED_HERE);
        return;
      }
      DirectionTrace trace = engine_.Trace(*local, direction, peer_identity, static_cast<uint8_t>(protocol),
                                           static_cast<uint16_t>(port));
      out->set_decision(ToProtoDecision(trace.decision));
      for (const auto& rule : trace.allowing_rules) *out->add_allowing_rules() = ToRuleRef(rule);
      for (const auto& policy : trace.isolating_policies) out->add_isolating_policies(policy);
    };
    verdict(source.local, Direction::kEgress, destination.identity, response.mutable_egress());
    verdict(destination.local, Direction::kIngress, source.identity, response.mutable_ingress());
  }
  response.set_allowed(response.egress().decision() != v1::DECISION_DENIED_DEFAULT &&
                       response.ingress().decision() != v1::DECISION_DENIED_DEFAULT);
  std::string explanation =
      ExplainTrace({source.name, source.identity}, {destination.name, destination.identity}, protocol, port,
                   response.egress(), response.ingress());

  if (!request.skip_kernel() && (source.local || destination.local)) {
    datapath::v1::TraceRequest trace;
    trace.set_source_ip(response.source_ip());
    trace.set_destination_ip(response.destination_ip());
    trace.set_protocol(protocol);
    // Any ephemeral port: policy only looks at the destination port.
    if (has_ports) trace.set_source_port(40000);
    trace.set_destination_port(port);
    grpc::ClientContext context;
    SetDeadline(context, options_.call_timeout);
    grpc::Status status = datapath_->Trace(&context, trace, response.mutable_kernel());
    if (status.ok()) {
      response.set_kernel_checked(true);
      response.set_kernel_allowed(response.kernel().allowed());
      response.set_kernel_agrees(response.kernel().allowed() == response.allowed());
      if (!response.kernel_agrees()) {
        absl::StrAppend(&explanation, " (the kernel ", response.kernel().allowed() ? "allows" : "denies",
                        " it: a policy change still propagating, or a bug; see `ebpf-cni-ctl policy verify`)");
      }
    } else {
      absl::StrAppend(&explanation, " (not confirmed by the kernel: ", status.error_message(), ")");
    }
  }
  response.set_explanation(std::move(explanation));
  return response;
}

// --- ListPolicies / DescribeRule ----------------------------------------------------

absl::StatusOr<v1::ListPoliciesResponse> PolicyAgent::ListPolicies(const v1::ListPoliciesRequest& request) {
  std::vector<PolicySummary> policies;
  std::set<EndpointKey> endpoints;
  {
    std::lock_guard<std::mutex> lock(mu_);
    policies = engine_.ListPolicies(request.namespace_());
  }
  for (const auto& policy : policies) endpoints.insert(policy.selected_endpoints.begin(), policy.selected_endpoints.end());

  // Per-rule counters live in each endpoint's policy map: sum them.
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> counters;
  for (const auto& key : endpoints) {
    datapath::v1::DumpPolicyRequest dump;
    *dump.mutable_key() = ToProtoKey(key);
    grpc::ClientContext context;
    SetDeadline(context, options_.call_timeout);
    datapath::v1::DumpPolicyResponse dumped;
    grpc::Status status = datapath_->DumpPolicy(&context, dump, &dumped);
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) continue;
    if (!status.ok()) return DatapathError(absl::StrCat("DumpPolicy(", key.ToString(), ")"), status);
    for (const auto& entry : dumped.entries()) {
      auto& sum = counters[entry.rule().rule_id()];
      sum.first += entry.packets();
      sum.second += entry.bytes();
    }
  }

  v1::ListPoliciesResponse response;
  for (const auto& policy : policies) {
    auto* out = response.add_policies();
    out->set_namespace_(policy.namespace_name);
    out->set_name(policy.name);
    if (policy.applies_to_ingress) out->add_policy_types(datapath::v1::POLICY_DIRECTION_INGRESS);
    if (policy.applies_to_egress) out->add_policy_types(datapath::v1::POLICY_DIRECTION_EGRESS);
    for (const auto& key : policy.selected_endpoints) *out->add_selected_endpoints() = ToProtoKey(key);
    for (const auto& rule : policy.rules) {
      auto* counted = out->add_rules();
      *counted->mutable_rule() = ToRuleRef(rule);
      if (auto it = counters.find(rule.rule_id); it != counters.end()) {
        counted->set_packets(it->second.first);
        counted->set_bytes(it->second.second);
      }
    }
  }
  return response;
}

absl::StatusOr<v1::DescribeRuleResponse> PolicyAgent::DescribeRule(uint32_t rule_id) {
  if (rule_id == 0) return absl::InvalidArgumentError("rule_id 0 is no rule: it marks a default deny");
  std::lock_guard<std::mutex> lock(mu_);
  auto ref = RuleRefLocked(rule_id);
  if (!ref) {
    return absl::NotFoundError(absl::StrCat("rule id ", rule_id,
                                            " was never issued by this agent (or its policy was deleted "
                                            "or the agent restarted since the event)"));
  }
  v1::DescribeRuleResponse response;
  *response.mutable_rule() = *ref;
  return response;
}

// --- status, verification, events ------------------------------------------------------

v1::GetStatusResponse PolicyAgent::GetStatus() {
  ClusterStateStatus source = source_->Status();
  v1::GetStatusResponse response;
  std::lock_guard<std::mutex> lock(mu_);
  auto* out = response.mutable_source();
  out->set_description(source.description);
  out->set_synced(source.synced && source_synced_);
  for (const auto& error : source.errors) out->add_errors(error);
  for (const auto& [key, error] : object_errors_) out->add_errors(error);
  out->set_pods(source.pods);
  out->set_namespaces(source.namespaces);
  out->set_network_policies(source.network_policies);
  response.set_compiled_generation(compiled_generation_);
  response.set_applied_generation(applied_generation_);
  response.set_endpoints(static_cast<uint32_t>(endpoints_.size()));
  response.set_identities(static_cast<uint32_t>(identities_.size()));
  response.set_endpoints_pending(failing_endpoints_);
  response.set_endpoint_policy_pushes(endpoint_policy_pushes_);
  response.set_prefix_identity_changes(prefix_identity_changes_);
  response.set_network_policies(static_cast<uint32_t>(engine_.Stats().policies));
  return response;
}

absl::StatusOr<v1::VerifyDatapathResponse> PolicyAgent::VerifyDatapath() {
  std::vector<std::pair<EndpointKey, datapath::v1::EndpointPolicy>> expected;
  v1::VerifyDatapathResponse response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    response.set_generation(compiled_generation_);
    for (const auto& [key, endpoint] : endpoints_) {
      const CompiledEndpointPolicy* policy = engine_.PolicyOf(key);
      expected.emplace_back(key, policy != nullptr ? policy->ToProto() : datapath::v1::EndpointPolicy());
    }
  }
  for (const auto& [key, policy] : expected) {
    datapath::v1::DumpPolicyRequest dump;
    *dump.mutable_key() = ToProtoKey(key);
    grpc::ClientContext context;
    SetDeadline(context, options_.call_timeout);
    datapath::v1::DumpPolicyResponse dumped;
    grpc::Status status = datapath_->DumpPolicy(&context, dump, &dumped);
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) continue;  // deleted meanwhile
    if (!status.ok()) return DatapathError(absl::StrCat("DumpPolicy(", key.ToString(), ")"), status);
    response.set_endpoints_checked(response.endpoints_checked() + 1);
    auto differences = DiffEndpointPolicy(policy, dumped);
    if (differences.empty()) continue;
    auto* mismatch = response.add_mismatches();
    *mismatch->mutable_key() = ToProtoKey(key);
    for (auto& difference : differences) mismatch->add_differences(std::move(difference));
  }
  return response;
}

v1::PolicyEvent PolicyAgent::EnrichEvent(const datapath::v1::Event& event) {
  v1::PolicyEvent out;
  *out.mutable_event() = event;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto rule = RuleRefLocked(event.rule_id())) *out.mutable_rule() = *rule;
  if (auto pod = PodOfAddressLocked(event.source_ip())) *out.mutable_source_pod() = *pod;
  if (auto pod = PodOfAddressLocked(event.destination_ip())) *out.mutable_destination_pod() = *pod;
  return out;
}

}  // namespace ebpfcni::policy
