#include "services/identity/identity_service.h"

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "common/grpc/status.h"
#include "common/net/ip_address.h"
#include "services/identity/reserved_identities.h"

namespace ebpfcni::identity {
namespace {

v1::Identity ReservedToProto(const ReservedIdentityInfo& info) {
  v1::Identity identity;
  identity.set_id(static_cast<uint32_t>(info.id));
  auto* label = identity.add_labels();
  label->set_source(kReservedSource);
  label->set_key(std::string(info.name));
  identity.set_reserved(true);
  return identity;
}

std::string OwnerKey(const v1::Owner& owner) { return absl::StrCat(owner.node(), "/", owner.endpoint()); }

absl::Status ValidateOwner(const v1::Owner& owner) {
  if (owner.node().empty() || owner.endpoint().empty()) {
    return absl::InvalidArgumentError("owner.node and owner.endpoint are required: they keep one reference per endpoint");
  }
  if (owner.node().find('/') != std::string::npos) {
    return absl::InvalidArgumentError("owner.node must not contain '/' (node names never do)");
  }
  return absl::OkStatus();
}

// "10.244.0.5" -> "10.244.0.5/32", "10.0.0.7/24" -> "10.0.0.0/24": one
// spelling per prefix, so every replica and node agrees on the key.
absl::StatusOr<std::string> CanonicalPrefix(const std::string& text) {
  auto prefix = IpPrefix::Parse(text, /*allow_bare_address=*/true);
  if (!prefix.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not an IP prefix: ", prefix.status().message()));
  }
  return IpPrefix(prefix->Network(), prefix->length()).ToString();
}

v1::IpCacheEntry IpCacheToProto(const IpCacheRecord& record) {
  v1::IpCacheEntry entry;
  entry.set_prefix(record.prefix);
  entry.set_identity(record.identity);
  entry.set_owner_node(record.node);
  return entry;
}

// How long a watcher sleeps without any change notification before it
// looks at the store anyway (a safety net: stores notify every change).
constexpr auto kWatchSafetyPoll = std::chrono::seconds(5);

}  // namespace

IdentityServiceImpl::IdentityServiceImpl(IdentityStore& store, LabelFilter filter)
    : store_(store), filter_(std::move(filter)) {
  store_.SetChangeListener([this] { NotifyWatchers(); });
}

IdentityServiceImpl::~IdentityServiceImpl() { store_.SetChangeListener(nullptr); }

v1::Identity ToProto(const StoredIdentity& stored) {
  v1::Identity identity;
  identity.set_id(stored.id);
  auto labels = LabelSet::ParseKey(stored.labels_key);
  if (labels.ok()) {
    for (const auto& label : labels->labels()) {
      auto* out = identity.add_labels();
      out->set_source(label.source);
      out->set_key(label.key);
      out->set_value(label.value);
    }
  }
  return identity;
}

absl::StatusOr<LabelSet> IdentityServiceImpl::CanonicalLabels(
    const google::protobuf::RepeatedPtrField<v1::Label>& in) const {
  std::vector<Label> labels;
  for (const auto& l : in) {
    Label label{l.source().empty() ? kK8sSource : l.source(), l.key(), l.value()};
    if (auto status = ValidateLabel(label); !status.ok()) return status;
    labels.push_back(std::move(label));
  }
  LabelSet filtered = filter_.Filter(LabelSet(std::move(labels)));
  if (filtered.empty()) {
    return absl::InvalidArgumentError(
        "no security-relevant label left after filtering; pass at least io.kubernetes.pod.namespace");
  }
  return filtered;
}

absl::StatusOr<v1::AllocateIdentityResponse> IdentityServiceImpl::Allocate(const LabelSet& labels,
                                                                          const v1::Owner& owner) {
  v1::AllocateIdentityResponse response;
  // A reserved label set ("reserved:host") names a fixed identity.
  if (labels.labels().size() == 1 && labels.labels()[0].source == kReservedSource) {
    auto info = FindReservedByName(labels.labels()[0].key);
    if (!info) return absl::InvalidArgumentError(absl::StrCat("unknown reserved identity ", labels.labels()[0].key));
    *response.mutable_identity() = ReservedToProto(*info);
    return response;
  }
  for (const auto& label : labels.labels()) {
    if (label.source == kReservedSource) {
      return absl::InvalidArgumentError("reserved labels cannot be mixed with other labels");
    }
  }
  if (auto status = ValidateOwner(owner); !status.ok()) return status;
  auto result = store_.AllocateOrGet(labels.Key(), OwnerKey(owner));
  if (!result.ok()) return result.status();
  *response.mutable_identity() = ToProto(result->identity);
  response.set_newly_allocated(result->newly_allocated);
  if (result->newly_allocated) {
    spdlog::info("allocated identity {} for {}", result->identity.id, result->identity.labels_key);
    NotifyWatchers();
  }
  return response;
}

grpc::Status IdentityServiceImpl::AllocateIdentity(grpc::ServerContext*, const v1::AllocateIdentityRequest* request,
                                                   v1::AllocateIdentityResponse* response) {
  auto labels = CanonicalLabels(request->labels());
  if (!labels.ok()) return ToGrpcStatus(labels.status());
  auto result = Allocate(*labels, request->owner());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

grpc::Status IdentityServiceImpl::ReleaseIdentity(grpc::ServerContext*, const v1::ReleaseIdentityRequest* request,
                                                  v1::ReleaseIdentityResponse* response) {
  if (FindReserved(request->id())) return grpc::Status::OK;  // reserved identities are never released
  if (auto status = ValidateOwner(request->owner()); !status.ok()) return ToGrpcStatus(status);
  auto remaining = store_.Release(request->id(), OwnerKey(request->owner()));
  if (!remaining.ok()) return ToGrpcStatus(remaining.status());
  response->set_remaining_references(*remaining);
  return grpc::Status::OK;
}

grpc::Status IdentityServiceImpl::GetIdentity(grpc::ServerContext*, const v1::GetIdentityRequest* request,
                                              v1::GetIdentityResponse* response) {
  if (auto info = FindReserved(request->id())) {
    *response->mutable_identity() = ReservedToProto(*info);
    return grpc::Status::OK;
  }
  auto found = store_.Get(request->id());
  if (!found.ok()) return ToGrpcStatus(found.status());
  if (!*found) return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("identity ", request->id(), " does not exist"));
  *response->mutable_identity() = ToProto(**found);
  return grpc::Status::OK;
}

grpc::Status IdentityServiceImpl::LookupIdentity(grpc::ServerContext*, const v1::LookupIdentityRequest* request,
                                                 v1::LookupIdentityResponse* response) {
  auto labels = CanonicalLabels(request->labels());
  if (!labels.ok()) return ToGrpcStatus(labels.status());
  if (labels->labels().size() == 1 && labels->labels()[0].source == kReservedSource) {
    if (auto info = FindReservedByName(labels->labels()[0].key)) {
      *response->mutable_identity() = ReservedToProto(*info);
      return grpc::Status::OK;
    }
  }
  auto found = store_.Lookup(labels->Key());
  if (!found.ok()) return ToGrpcStatus(found.status());
  if (!*found) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no identity for labels ", labels->Key()));
  }
  *response->mutable_identity() = ToProto(**found);
  return grpc::Status::OK;
}

grpc::Status IdentityServiceImpl::ListIdentities(grpc::ServerContext*, const v1::ListIdentitiesRequest*,
                                                 v1::ListIdentitiesResponse* response) {
  for (const auto& info : kReservedIdentities) *response->add_identities() = ReservedToProto(info);
  auto snapshot = store_.List();
  if (!snapshot.ok()) return ToGrpcStatus(snapshot.status());
  for (const auto& identity : snapshot->identities) *response->add_identities() = ToProto(identity);
  return grpc::Status::OK;
}

grpc::Status IdentityServiceImpl::ResolvePod(grpc::ServerContext*, const v1::ResolvePodRequest* request,
                                             v1::ResolvePodResponse* response) {
  if (request->pod_namespace().empty() || request->pod_name().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "pod_namespace and pod_name are required");
  }
  // Until a cluster-state source exists, the caller supplies the pod's labels.
  std::map<std::string, std::string> pod_labels;
  for (const auto& label : request->labels()) pod_labels[label.key()] = label.value();
  LabelSet labels = PodLabelSet(request->pod_namespace(), pod_labels, {});
  google::protobuf::RepeatedPtrField<v1::Label> as_proto;
  for (const auto& label : labels.labels()) {
    auto* l = as_proto.Add();
    l->set_source(label.source);
    l->set_key(label.key);
    l->set_value(label.value);
  }
  auto canonical = CanonicalLabels(as_proto);
  if (!canonical.ok()) return ToGrpcStatus(canonical.status());
  v1::Owner owner = request->owner();
  if (owner.endpoint().empty()) owner.set_endpoint(absl::StrCat(request->pod_namespace(), "/", request->pod_name()));
  auto result = Allocate(*canonical, owner);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response->mutable_identity() = result->identity();
  return grpc::Status::OK;
}

void IdentityServiceImpl::NotifyWatchers() {
  std::lock_guard<std::mutex> lock(watch_mu_);
  ++local_changes_;
  watch_cv_.notify_all();
}

void IdentityServiceImpl::StopWatches() {
  std::lock_guard<std::mutex> lock(watch_mu_);
  stopping_ = true;
  watch_cv_.notify_all();
}

absl::Status IdentityServiceImpl::CollectGarbage(absl::Duration grace) {
  auto deleted = store_.CollectGarbage(grace);
  if (!deleted.ok()) return deleted.status();
  if (!deleted->empty()) NotifyWatchers();
  return absl::OkStatus();
}

grpc::Status IdentityServiceImpl::WatchIdentities(grpc::ServerContext* context,
                                                  const v1::WatchIdentitiesRequest* request,
                                                  grpc::ServerWriter<v1::WatchIdentitiesResponse>* writer) {
  uint64_t revision = request->after_revision();
  if (revision == 0) {
    auto snapshot = store_.List();
    if (!snapshot.ok()) return ToGrpcStatus(snapshot.status());
    for (const auto& info : kReservedIdentities) {
      v1::WatchIdentitiesResponse event;
      event.set_kind(v1::CHANGE_KIND_SNAPSHOT);
      *event.mutable_identity() = ReservedToProto(info);
      if (!writer->Write(event)) return grpc::Status::OK;
    }
    for (const auto& identity : snapshot->identities) {
      v1::WatchIdentitiesResponse event;
      event.set_kind(v1::CHANGE_KIND_SNAPSHOT);
      *event.mutable_identity() = ToProto(identity);
      event.set_revision(snapshot->revision);
      if (!writer->Write(event)) return grpc::Status::OK;
    }
    v1::WatchIdentitiesResponse done;
    done.set_kind(v1::CHANGE_KIND_SNAPSHOT_DONE);
    done.set_revision(snapshot->revision);
    if (!writer->Write(done)) return grpc::Status::OK;
    revision = snapshot->revision;
  }
  return StreamChanges(
      context, revision, [this](uint64_t after) { return store_.ChangesSince(after); },
      [writer](const IdentityChange& change) {
        v1::WatchIdentitiesResponse event;
        event.set_kind(change.kind == ChangeKind::kUpsert ? v1::CHANGE_KIND_UPSERT : v1::CHANGE_KIND_DELETE);
        *event.mutable_identity() = ToProto(change.identity);
        event.set_revision(change.revision);
        return writer->Write(event);
      });
}

template <typename Fetch, typename Send>
grpc::Status IdentityServiceImpl::StreamChanges(grpc::ServerContext* context, uint64_t revision, Fetch changes_since,
                                                Send send) {
  while (!context->IsCancelled()) {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      if (stopping_) break;
      // Taken before reading the store: a change that lands while we read
      // moves the counter, so the wait below returns at once.
      seen = local_changes_;
    }
    auto changes = changes_since(revision);
    if (!changes.ok()) return ToGrpcStatus(changes.status());
    for (const auto& change : *changes) {
      if (!send(change)) return grpc::Status::OK;
      revision = change.revision;
    }
    std::unique_lock<std::mutex> lock(watch_mu_);
    watch_cv_.wait_for(lock, kWatchSafetyPoll, [&] { return stopping_ || local_changes_ != seen; });
  }
  return grpc::Status::OK;
}

grpc::Status IdentityServiceImpl::WatchIpCache(grpc::ServerContext* context, const v1::WatchIpCacheRequest* request,
                                               grpc::ServerWriter<v1::WatchIpCacheResponse>* writer) {
  uint64_t revision = request->after_revision();
  if (revision == 0) {
    auto snapshot = store_.ListIpCache();
    if (!snapshot.ok()) return ToGrpcStatus(snapshot.status());
    for (const auto& entry : snapshot->entries) {
      v1::WatchIpCacheResponse event;
      event.set_kind(v1::CHANGE_KIND_SNAPSHOT);
      *event.mutable_entry() = IpCacheToProto(entry);
      event.set_revision(snapshot->revision);
      if (!writer->Write(event)) return grpc::Status::OK;
    }
    v1::WatchIpCacheResponse done;
    done.set_kind(v1::CHANGE_KIND_SNAPSHOT_DONE);
    done.set_revision(snapshot->revision);
    if (!writer->Write(done)) return grpc::Status::OK;
    revision = snapshot->revision;
  }
  return StreamChanges(
      context, revision, [this](uint64_t after) { return store_.IpCacheChangesSince(after); },
      [writer](const IpCacheChange& change) {
        v1::WatchIpCacheResponse event;
        event.set_kind(change.kind == ChangeKind::kUpsert ? v1::CHANGE_KIND_UPSERT : v1::CHANGE_KIND_DELETE);
        *event.mutable_entry() = IpCacheToProto(change.entry);
        event.set_revision(change.revision);
        return writer->Write(event);
      });
}

grpc::Status IdentityServiceImpl::NodeHeartbeat(grpc::ServerContext*, const v1::NodeHeartbeatRequest* request,
                                                v1::NodeHeartbeatResponse* response) {
  if (request->node().empty() || request->node().find('/') != std::string::npos) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node is required and must not contain '/'");
  }
  auto result = store_.NodeHeartbeat(request->node(), absl::Seconds(request->ttl_seconds()));
  if (!result.ok()) return ToGrpcStatus(result.status());
  response->set_new_session(result->new_session);
  response->set_ttl_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(result->ttl)));
  return grpc::Status::OK;
}

grpc::Status IdentityServiceImpl::UpsertIpCacheEntry(grpc::ServerContext*,
                                                     const v1::UpsertIpCacheEntryRequest* request,
                                                     v1::UpsertIpCacheEntryResponse* response) {
  const auto& entry = request->entry();
  if (entry.owner_node().empty() || entry.owner_node().find('/') != std::string::npos) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "entry.owner_node is required and must not contain '/'");
  }
  if (entry.identity() == 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "entry.identity is required (0 is \"unknown\")");
  }
  auto prefix = CanonicalPrefix(entry.prefix());
  if (!prefix.ok()) return ToGrpcStatus(prefix.status());
  auto revision = store_.UpsertIpCacheEntry({*prefix, entry.identity(), entry.owner_node()});
  if (!revision.ok()) return ToGrpcStatus(revision.status());
  response->set_revision(*revision);
  return grpc::Status::OK;
}

grpc::Status IdentityServiceImpl::DeleteIpCacheEntry(grpc::ServerContext*,
                                                     const v1::DeleteIpCacheEntryRequest* request,
                                                     v1::DeleteIpCacheEntryResponse* response) {
  if (request->node().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node is required");
  auto prefix = CanonicalPrefix(request->prefix());
  if (!prefix.ok()) return ToGrpcStatus(prefix.status());
  auto deleted = store_.DeleteIpCacheEntry(*prefix, request->node());
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  response->set_deleted(*deleted);
  return grpc::Status::OK;
}

}  // namespace ebpfcni::identity
