#include "services/datapath/datapath_service.h"

#include <arpa/inet.h>

#include <map>
#include <optional>
#include <set>

#include <absl/strings/str_cat.h>

#include "common/grpc/status.h"
#include "common/net/ip_address.h"
#include "ebpfcni/datapath_abi.h"

namespace ebpfcni::datapath {
namespace {

EndpointKey FromProto(const v1::EndpointKey& key) {
  return EndpointKey{key.container_id(), key.interface_name()};
}

void ToProto(const EndpointKey& key, v1::EndpointKey* out) {
  out->set_container_id(key.container_id);
  out->set_interface_name(key.interface_name);
}

v1::AttachmentState ToProto(AttachmentState state) {
  switch (state) {
    case AttachmentState::kAttached:
      return v1::ATTACHMENT_STATE_ATTACHED;
    case AttachmentState::kInterfaceGone:
      return v1::ATTACHMENT_STATE_INTERFACE_GONE;
    case AttachmentState::kDetached:
      break;
  }
  return v1::ATTACHMENT_STATE_UNSPECIFIED;
}

void ToProto(const PolicySummary& summary, v1::PolicySummary* out) {
  out->set_installed(summary.installed);
  out->set_ingress_isolated(summary.ingress_isolated);
  out->set_egress_isolated(summary.egress_isolated);
  out->set_rule_count(summary.rule_count);
  out->set_verdict_events(summary.verdict_events);
  out->set_rule_hit_packets(summary.rule_hit_packets);
  out->set_rule_hit_bytes(summary.rule_hit_bytes);
}

void ToProto(const PolicyRule& rule, v1::PolicyRule* out) {
  out->set_direction(rule.direction == PolicyDirection::kIngress
                         ? v1::POLICY_DIRECTION_INGRESS
                         : v1::POLICY_DIRECTION_EGRESS);
  out->set_peer_identity(rule.peer_identity);
  out->set_protocol(rule.protocol);
  out->set_port(rule.port);
  out->set_action(rule.action == PolicyAction::kAllow ? v1::POLICY_ACTION_ALLOW
                                                      : v1::POLICY_ACTION_DENY);
  out->set_rule_id(rule.rule_id);
  out->set_end_port(rule.end_port);
}

absl::StatusOr<EndpointPolicy> FromProto(const v1::EndpointPolicy& in) {
  EndpointPolicy policy;
  policy.ingress_isolated = in.ingress_isolated();
  policy.egress_isolated = in.egress_isolated();
  policy.verdict_events = in.verdict_events();
  for (int i = 0; i < in.rules_size(); ++i) {
    const v1::PolicyRule& r = in.rules(i);
    std::string where = absl::StrCat("policy.rules[", i, "]");
    PolicyRule rule;
    switch (r.direction()) {
      case v1::POLICY_DIRECTION_INGRESS:
        rule.direction = PolicyDirection::kIngress;
        break;
      case v1::POLICY_DIRECTION_EGRESS:
        rule.direction = PolicyDirection::kEgress;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".direction must be INGRESS or EGRESS"));
    }
    switch (r.action()) {
      case v1::POLICY_ACTION_ALLOW:
        rule.action = PolicyAction::kAllow;
        break;
      case v1::POLICY_ACTION_DENY:
        rule.action = PolicyAction::kDeny;
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(where, ".action must be ALLOW or DENY"));
    }
    if (r.protocol() > 255) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".protocol ", r.protocol(), " is not an IP protocol number (0..255)"));
    }
    if (r.port() > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".port ", r.port(), " is out of range (0..65535)"));
    }
    if (r.end_port() > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".end_port ", r.end_port(), " is out of range (0..65535)"));
    }
    rule.peer_identity = r.peer_identity();
    rule.protocol = static_cast<uint8_t>(r.protocol());
    rule.port = static_cast<uint16_t>(r.port());
    rule.end_port = static_cast<uint16_t>(r.end_port());
    rule.rule_id = r.rule_id();
    policy.rules.push_back(rule);
  }
  if (absl::Status status = ValidatePolicy(policy); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("policy.", status.message()));
  }
  return policy;
}

v1::Verdict VerdictToProto(uint32_t verdict) {
  switch (verdict) {
    case EBPFCNI_VERDICT_ALLOWED_CONNTRACK:
      return v1::VERDICT_ALLOWED_CONNTRACK;
    case EBPFCNI_VERDICT_ALLOWED_POLICY:
      return v1::VERDICT_ALLOWED_POLICY;
    case EBPFCNI_VERDICT_ALLOWED_NOT_ISOLATED:
      return v1::VERDICT_ALLOWED_NOT_ISOLATED;
    case EBPFCNI_VERDICT_ALLOWED_NEIGHBOUR:
      return v1::VERDICT_ALLOWED_NEIGHBOUR;
    case EBPFCNI_VERDICT_DROPPED:
      return v1::VERDICT_DROPPED;
    case EBPFCNI_VERDICT_NOT_AN_ENDPOINT:
      return v1::VERDICT_NOT_AN_ENDPOINT;
    default:
      return v1::VERDICT_UNSPECIFIED;
  }
}

// The BPF codes and the proto enum share numbers on purpose.
v1::DropReason DropReasonToProto(uint32_t reason) {
  static_assert(static_cast<int>(v1::DROP_REASON_POLICY_DENY) ==
                static_cast<int>(EBPFCNI_DROP_POLICY_DENY));
  static_assert(static_cast<int>(v1::DROP_REASON_IPV6_EXTENSION_LIMIT) ==
                static_cast<int>(EBPFCNI_DROP_IPV6_EXTENSION_LIMIT));
  static_assert(static_cast<int>(v1::DropReason_MAX) + 1 ==
                static_cast<int>(EBPFCNI_DROP_REASON_MAX));
  if (reason >= EBPFCNI_DROP_REASON_MAX) return v1::DROP_REASON_UNSPECIFIED;
  return static_cast<v1::DropReason>(reason);
}

std::string AddressText(uint8_t family, const uint8_t* bytes) {
  if (family == EBPFCNI_FAMILY_IPV4) return IpAddress::FromV4Bytes(bytes).ToString();
  if (family == EBPFCNI_FAMILY_IPV6) return IpAddress::FromV6Bytes(bytes).ToString();
  return "";
}

void ToProto(const ebpfcni_event& raw, v1::Event* out) {
  out->set_type(raw.type == EBPFCNI_EVENT_DROP ? v1::EVENT_TYPE_DROP
                                               : v1::EVENT_TYPE_POLICY_VERDICT);
  out->set_timestamp_ns(raw.timestamp_ns);
  out->set_endpoint_id(raw.endpoint_id);
  out->set_ifindex(raw.ifindex);
  out->set_direction(raw.direction == EBPFCNI_DIR_FROM_POD ? v1::TRAFFIC_DIRECTION_FROM_POD
                                                           : v1::TRAFFIC_DIRECTION_TO_POD);
  out->set_protocol(raw.protocol);
  out->set_source_ip(AddressText(raw.family, raw.saddr));
  out->set_destination_ip(AddressText(raw.family, raw.daddr));
  out->set_source_port(ntohs(raw.sport));
  out->set_destination_port(ntohs(raw.dport));
  out->set_source_identity(raw.src_identity);
  out->set_destination_identity(raw.dst_identity);
  out->set_reason(DropReasonToProto(raw.reason));
  out->set_rule_id(raw.rule_id);
  out->set_length(raw.length);
}

void ToProto(const EndpointStatus& status, v1::Endpoint* out) {
  const EndpointRecord& r = status.record;
  ToProto(r.key, out->mutable_key());
  out->set_endpoint_id(r.endpoint_id);
  out->set_host_ifindex(r.host_ifindex);
  out->set_host_interface_name(r.host_interface_name);
  out->set_netns_path(r.netns_path);
  for (const std::string& address : r.addresses) out->add_addresses(address);
  out->set_pod_namespace(r.pod_namespace);
  out->set_pod_name(r.pod_name);
  v1::TrafficCounters* counters = out->mutable_counters();
  counters->set_from_pod_packets(status.counters.from_pod_packets);
  counters->set_from_pod_bytes(status.counters.from_pod_bytes);
  counters->set_to_pod_packets(status.counters.to_pod_packets);
  counters->set_to_pod_bytes(status.counters.to_pod_bytes);
  out->set_state(ToProto(status.state));
  out->set_identity(r.identity);
  ToProto(status.policy, out->mutable_policy());
  out->set_tc_attach_mode(r.attach_mode == TcAttachMode::kTcx ? v1::TC_ATTACH_MODE_TCX
                                                              : v1::TC_ATTACH_MODE_CLSACT);
}

}  // namespace

grpc::Status DatapathServiceImpl::CreateEndpoint(grpc::ServerContext*,
                                                 const v1::CreateEndpointRequest* request,
                                                 v1::CreateEndpointResponse* response) {
  EndpointRecord record;
  record.key = FromProto(request->key());
  record.host_ifindex = request->host_ifindex();
  record.host_interface_name = request->host_interface_name();
  record.netns_path = request->netns_path();
  record.addresses.assign(request->addresses().begin(), request->addresses().end());
  record.pod_namespace = request->pod_namespace();
  record.pod_name = request->pod_name();
  record.identity = request->identity();
  switch (request->tc_attach_mode()) {
    case v1::TC_ATTACH_MODE_UNSPECIFIED:
      record.attach_mode = TcAttachMode::kAuto;
      break;
    case v1::TC_ATTACH_MODE_CLSACT:
      record.attach_mode = TcAttachMode::kClsact;
      break;
    case v1::TC_ATTACH_MODE_TCX:
      record.attach_mode = TcAttachMode::kTcx;
      break;
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "tc_attach_mode must be UNSPECIFIED, CLSACT or TCX");
  }
  std::optional<EndpointPolicy> policy;
  if (request->has_policy()) {
    absl::StatusOr<EndpointPolicy> parsed = FromProto(request->policy());
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    policy = *std::move(parsed);
  }
  absl::StatusOr<EndpointStatus> created = manager_->CreateEndpoint(record, policy);
  if (!created.ok()) return ToGrpcStatus(created.status());
  ToProto(*created, response->mutable_endpoint());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::DeleteEndpoint(grpc::ServerContext*,
                                                 const v1::DeleteEndpointRequest* request,
                                                 v1::DeleteEndpointResponse* response) {
  absl::StatusOr<bool> deleted = manager_->DeleteEndpoint(FromProto(request->key()));
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  response->set_deleted(*deleted);
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::GetEndpoint(grpc::ServerContext*,
                                              const v1::GetEndpointRequest* request,
                                              v1::GetEndpointResponse* response) {
  absl::StatusOr<EndpointStatus> endpoint = manager_->GetEndpoint(FromProto(request->key()));
  if (!endpoint.ok()) return ToGrpcStatus(endpoint.status());
  ToProto(*endpoint, response->mutable_endpoint());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::ListEndpoints(grpc::ServerContext*,
                                                const v1::ListEndpointsRequest*,
                                                v1::ListEndpointsResponse* response) {
  absl::StatusOr<std::vector<EndpointStatus>> endpoints = manager_->ListEndpoints();
  if (!endpoints.ok()) return ToGrpcStatus(endpoints.status());
  for (const EndpointStatus& endpoint : *endpoints) ToProto(endpoint, response->add_endpoints());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::WatchEndpoints(
    grpc::ServerContext* context, const v1::WatchEndpointsRequest*,
    grpc::ServerWriter<v1::WatchEndpointsResponse>* writer) {
  std::shared_ptr<EndpointWatch> watch = manager_->Watch(watch_queue_capacity_);
  // However the stream ends, the manager stops queueing for it.
  struct Unwatch {
    EndpointManager* manager;
    std::shared_ptr<EndpointWatch> watch;
    ~Unwatch() { manager->Unwatch(watch); }
  } unwatch{manager_, watch};

  for (const EndpointStatus& endpoint : watch->snapshot()) {
    v1::WatchEndpointsResponse response;
    response.set_change(v1::ENDPOINT_CHANGE_SNAPSHOT);
    ToProto(endpoint, response.mutable_endpoint());
    response.mutable_endpoint()->clear_counters();
    if (!writer->Write(response)) return grpc::Status::OK;  // the client went away
  }
  {
    v1::WatchEndpointsResponse done;
    done.set_change(v1::ENDPOINT_CHANGE_SNAPSHOT_DONE);
    if (!writer->Write(done)) return grpc::Status::OK;
  }
  while (!context->IsCancelled()) {
    absl::StatusOr<std::optional<EndpointChange>> change = watch->Next(absl::Milliseconds(200));
    if (!change.ok()) return ToGrpcStatus(change.status());  // overflowed: re-watch
    if (!change->has_value()) continue;
    v1::WatchEndpointsResponse response;
    switch ((*change)->type) {
      case EndpointChangeType::kCreated:
        response.set_change(v1::ENDPOINT_CHANGE_CREATED);
        break;
      case EndpointChangeType::kUpdated:
        response.set_change(v1::ENDPOINT_CHANGE_UPDATED);
        break;
      case EndpointChangeType::kDeleted:
        response.set_change(v1::ENDPOINT_CHANGE_DELETED);
        break;
    }
    ToProto((*change)->endpoint, response.mutable_endpoint());
    response.mutable_endpoint()->clear_counters();
    if (!writer->Write(response)) break;
  }
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::GarbageCollectEndpoints(
    grpc::ServerContext*, const v1::GarbageCollectEndpointsRequest* request,
    v1::GarbageCollectEndpointsResponse* response) {
  std::vector<EndpointKey> valid;
  for (const v1::EndpointKey& key : request->valid_endpoints()) valid.push_back(FromProto(key));
  absl::StatusOr<std::vector<EndpointKey>> deleted = manager_->GarbageCollect(valid);
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  for (const EndpointKey& key : *deleted) ToProto(key, response->add_deleted());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::SetEndpointIdentity(
    grpc::ServerContext*, const v1::SetEndpointIdentityRequest* request,
    v1::SetEndpointIdentityResponse* response) {
  absl::StatusOr<EndpointStatus> endpoint =
      manager_->SetEndpointIdentity(FromProto(request->key()), request->identity());
  if (!endpoint.ok()) return ToGrpcStatus(endpoint.status());
  ToProto(*endpoint, response->mutable_endpoint());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::ReplaceEndpointPolicy(
    grpc::ServerContext*, const v1::ReplaceEndpointPolicyRequest* request,
    v1::ReplaceEndpointPolicyResponse* response) {
  std::optional<EndpointPolicy> policy;
  if (request->has_policy()) {
    absl::StatusOr<EndpointPolicy> parsed = FromProto(request->policy());
    if (!parsed.ok()) return ToGrpcStatus(parsed.status());
    policy = *std::move(parsed);
  }
  absl::StatusOr<PolicySummary> summary =
      manager_->ReplaceEndpointPolicy(FromProto(request->key()), policy);
  if (!summary.ok()) return ToGrpcStatus(summary.status());
  ToProto(*summary, response->mutable_policy());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::ReplaceEndpointPolicies(
    grpc::ServerContext*, const v1::ReplaceEndpointPoliciesRequest* request,
    v1::ReplaceEndpointPoliciesResponse* response) {
  // Items whose policy does not parse fail alone; the rest go to the
  // manager as one batch.
  std::vector<absl::Status> parse_errors(request->items_size());
  std::vector<EndpointManager::PolicyReplacement> batch;
  std::vector<int> batch_items;  // request index per batch entry
  for (int i = 0; i < request->items_size(); ++i) {
    const v1::ReplaceEndpointPolicyRequest& item = request->items(i);
    EndpointManager::PolicyReplacement replacement{FromProto(item.key()), std::nullopt};
    if (item.has_policy()) {
      absl::StatusOr<EndpointPolicy> parsed = FromProto(item.policy());
      if (!parsed.ok()) {
        parse_errors[i] = absl::Status(parsed.status().code(),
                                       absl::StrCat("items[", i, "].", parsed.status().message()));
        continue;
      }
      replacement.policy = *std::move(parsed);
    }
    batch.push_back(std::move(replacement));
    batch_items.push_back(i);
  }
  std::vector<absl::StatusOr<PolicySummary>> applied = manager_->ReplaceEndpointPolicies(batch);
  std::vector<const absl::StatusOr<PolicySummary>*> by_item(request->items_size(), nullptr);
  for (size_t b = 0; b < batch.size(); ++b) by_item[batch_items[b]] = &applied[b];
  for (int i = 0; i < request->items_size(); ++i) {
    v1::ReplaceEndpointPolicyResult* result = response->add_results();
    *result->mutable_key() = request->items(i).key();
    absl::Status status =
        by_item[i] != nullptr ? by_item[i]->status() : parse_errors[i];
    // absl status codes are the google.rpc codes.
    result->set_code(static_cast<int32_t>(status.code()));
    result->set_message(std::string(status.message()));
    if (by_item[i] != nullptr && by_item[i]->ok()) ToProto(**by_item[i], result->mutable_policy());
  }
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::UpsertPrefixIdentity(
    grpc::ServerContext*, const v1::UpsertPrefixIdentityRequest* request,
    v1::UpsertPrefixIdentityResponse*) {
  std::vector<std::pair<IpPrefix, uint32_t>> entries;
  for (int i = 0; i < request->entries_size(); ++i) {
    const v1::PrefixIdentity& entry = request->entries(i);
    absl::StatusOr<IpPrefix> prefix = IpPrefix::Parse(entry.prefix(), /*allow_bare_address=*/true);
    if (!prefix.ok()) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].prefix \"", entry.prefix(),
                       "\" is not an IP prefix (e.g. 10.0.0.0/8, fd00::/64)")));
    }
    if (entry.identity() == 0) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].identity must be non-zero")));
    }
    entries.emplace_back(*prefix, entry.identity());
  }
  return ToGrpcStatus(manager_->UpsertPrefixIdentities(entries));
}

grpc::Status DatapathServiceImpl::DeletePrefixIdentity(
    grpc::ServerContext*, const v1::DeletePrefixIdentityRequest* request,
    v1::DeletePrefixIdentityResponse* response) {
  std::vector<IpPrefix> prefixes;
  for (int i = 0; i < request->prefixes_size(); ++i) {
    absl::StatusOr<IpPrefix> prefix =
        IpPrefix::Parse(request->prefixes(i), /*allow_bare_address=*/true);
    if (!prefix.ok()) {
      return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
          "prefixes[", i, "] \"", request->prefixes(i), "\" is not an IP prefix")));
    }
    prefixes.push_back(*prefix);
  }
  absl::StatusOr<uint32_t> deleted = manager_->DeletePrefixIdentities(prefixes);
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  response->set_deleted(*deleted);
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::ListPrefixIdentities(grpc::ServerContext*,
                                                       const v1::ListPrefixIdentitiesRequest*,
                                                       v1::ListPrefixIdentitiesResponse* response) {
  absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> entries =
      manager_->ListPrefixIdentities();
  if (!entries.ok()) return ToGrpcStatus(entries.status());
  for (const auto& [prefix, identity] : *entries) {
    v1::PrefixIdentity* out = response->add_entries();
    out->set_prefix(prefix.ToString());
    out->set_identity(identity);
  }
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::DumpPolicy(grpc::ServerContext*,
                                             const v1::DumpPolicyRequest* request,
                                             v1::DumpPolicyResponse* response) {
  absl::StatusOr<PolicyDump> dump = manager_->DumpPolicy(FromProto(request->key()));
  if (!dump.ok()) return ToGrpcStatus(dump.status());
  ToProto(dump->summary, response->mutable_policy());
  for (const PolicyEntryCounters& entry : dump->entries) {
    v1::PolicyEntry* out = response->add_entries();
    ToProto(entry.rule, out->mutable_rule());
    out->set_packets(entry.packets);
    out->set_bytes(entry.bytes);
  }
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::GetMetrics(grpc::ServerContext*, const v1::GetMetricsRequest*,
                                             v1::GetMetricsResponse* response) {
  absl::StatusOr<std::vector<PacketCount>> metrics = manager_->Metrics();
  if (!metrics.ok()) return ToGrpcStatus(metrics.status());
  for (uint32_t verdict = 1; verdict < EBPFCNI_VERDICT_MAX; ++verdict) {
    v1::VerdictCount* out = response->add_verdicts();
    out->set_verdict(VerdictToProto(verdict));
    out->set_packets((*metrics)[EBPFCNI_METRIC_VERDICT(verdict)].packets);
    out->set_bytes((*metrics)[EBPFCNI_METRIC_VERDICT(verdict)].bytes);
  }
  for (uint32_t reason = 1; reason < EBPFCNI_DROP_REASON_MAX; ++reason) {
    v1::DropCount* out = response->add_drops();
    out->set_reason(DropReasonToProto(reason));
    out->set_packets((*metrics)[EBPFCNI_METRIC_DROP(reason)].packets);
    out->set_bytes((*metrics)[EBPFCNI_METRIC_DROP(reason)].bytes);
  }
  response->set_events_rate_limited((*metrics)[EBPFCNI_METRIC_EVENTS_RATE_LIMITED].packets);
  response->set_events_ring_full((*metrics)[EBPFCNI_METRIC_EVENTS_RING_FULL].packets);
  if (events_ != nullptr) response->set_events_dropped_by_service(events_->dropped());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::StreamEvents(
    grpc::ServerContext* context, const v1::StreamEventsRequest* request,
    grpc::ServerWriter<v1::StreamEventsResponse>* writer) {
  if (events_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "this datapath does not stream events");
  }
  std::optional<uint32_t> only_endpoint;
  if (request->has_key()) {
    absl::StatusOr<EndpointStatus> endpoint = manager_->GetEndpoint(FromProto(request->key()));
    if (!endpoint.ok()) return ToGrpcStatus(endpoint.status());
    only_endpoint = endpoint->record.endpoint_id;
  }
  std::set<int> types(request->types().begin(), request->types().end());
  std::shared_ptr<EventStream::Subscription> subscription = events_->Subscribe();
  // Tell the client the stream is live before the first event, so a caller
  // can subscribe and then generate traffic without a race.
  context->AddInitialMetadata("ebpfcni-stream", "ready");
  writer->SendInitialMetadata();
  std::map<uint32_t, std::optional<EndpointKey>> keys;  // cache per stream
  uint64_t keys_generation = manager_->endpoint_id_generation();
  while (!context->IsCancelled()) {
    std::optional<ebpfcni_event> raw = subscription->Next(absl::Milliseconds(200));
    if (!raw.has_value()) continue;
    if (only_endpoint.has_value() && raw->endpoint_id != *only_endpoint) continue;
    v1::StreamEventsResponse response;
    ToProto(*raw, response.mutable_event());
    if (!types.empty() && !types.contains(response.event().type())) continue;
    if (uint64_t generation = manager_->endpoint_id_generation(); generation != keys_generation) {
      keys.clear();  // an id was freed and may name another endpoint now
      keys_generation = generation;
    }
    auto [it, inserted] = keys.try_emplace(raw->endpoint_id);
    if (inserted) it->second = manager_->KeyOfEndpointId(raw->endpoint_id);
    if (it->second.has_value()) ToProto(*it->second, response.mutable_event()->mutable_endpoint_key());
    if (!writer->Write(response)) break;
  }
  events_->Unsubscribe(subscription);
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::Trace(grpc::ServerContext*, const v1::TraceRequest* request,
                                        v1::TraceResponse* response) {
  TraceSpec spec;
  absl::StatusOr<IpAddress> source = IpAddress::Parse(request->source_ip());
  absl::StatusOr<IpAddress> destination = IpAddress::Parse(request->destination_ip());
  if (!source.ok() || !destination.ok()) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("source_ip \"", request->source_ip(), "\" and destination_ip \"",
                     request->destination_ip(), "\" must both be IP addresses")));
  }
  if (request->protocol() > 255 || request->source_port() > 65535 ||
      request->destination_port() > 65535 || request->tcp_flags() > 255) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "protocol and tcp_flags must be 0..255, ports 0..65535"));
  }
  spec.source = *source;
  spec.destination = *destination;
  spec.protocol = static_cast<uint8_t>(request->protocol() == 0 ? 6 : request->protocol());
  spec.source_port = static_cast<uint16_t>(request->source_port());
  spec.destination_port = static_cast<uint16_t>(request->destination_port());
  spec.tcp_flags = static_cast<uint8_t>(request->tcp_flags());
  absl::StatusOr<std::vector<TraceHop>> hops = manager_->Trace(spec);
  if (!hops.ok()) return ToGrpcStatus(hops.status());
  bool allowed = true;
  for (const TraceHop& hop : *hops) {
    v1::TraceHop* out = response->add_hops();
    ToProto(hop.key, out->mutable_endpoint_key());
    out->set_endpoint_id(hop.endpoint_id);
    out->set_direction(hop.from_pod ? v1::TRAFFIC_DIRECTION_FROM_POD
                                    : v1::TRAFFIC_DIRECTION_TO_POD);
    out->set_verdict(VerdictToProto(hop.result.verdict));
    out->set_reason(DropReasonToProto(hop.result.reason));
    out->set_rule_id(hop.result.rule_id);
    out->set_endpoint_identity(hop.result.endpoint_identity);
    out->set_peer_identity(hop.result.peer_identity);
    if (hop.result.verdict == EBPFCNI_VERDICT_DROPPED) allowed = false;
  }
  response->set_allowed(allowed);
  return grpc::Status::OK;
}

}  // namespace ebpfcni::datapath
