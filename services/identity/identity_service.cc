#include "services/identity/identity_service.h"

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "common/grpc/status.h"
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
  return absl::OkStatus();
}

}  // namespace

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
  while (!context->IsCancelled()) {
    auto changes = store_.ChangesSince(revision);
    if (!changes.ok()) return ToGrpcStatus(changes.status());
    for (const auto& change : *changes) {
      v1::WatchIdentitiesResponse event;
      event.set_kind(change.kind == ChangeKind::kUpsert ? v1::CHANGE_KIND_UPSERT : v1::CHANGE_KIND_DELETE);
      *event.mutable_identity() = ToProto(change.identity);
      event.set_revision(change.revision);
      if (!writer->Write(event)) return grpc::Status::OK;
      revision = change.revision;
    }
    std::unique_lock<std::mutex> lock(watch_mu_);
    if (stopping_) break;
    uint64_t seen = local_changes_;
    // Local writes wake us at once; the timeout also catches writers in
    // other processes sharing the store.
    watch_cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_ || local_changes_ != seen; });
  }
  return grpc::Status::OK;
}

}  // namespace ebpfcni::identity
