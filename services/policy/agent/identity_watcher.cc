#include "services/policy/agent/identity_watcher.h"

#include <spdlog/spdlog.h>

namespace ebpfcni::policy {

identity::LabelSet LabelSetFromProto(const google::protobuf::RepeatedPtrField<identity::v1::Label>& labels) {
  std::vector<identity::Label> out;
  out.reserve(labels.size());
  for (const auto& l : labels) out.push_back({l.source(), l.key(), l.value()});
  return identity::LabelSet(std::move(out));
}

IdentityWatcher::IdentityWatcher(std::shared_ptr<grpc::Channel> channel, Callbacks callbacks)
    : StreamFollower("identity watch"),
      stub_(identity::v1::IdentityService::NewStub(std::move(channel))),
      callbacks_(std::move(callbacks)) {}

void IdentityWatcher::OnStreamEnded(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      // The service went away or ended the stream (shutdown): resume.
      return;
    default:
      // The service cannot resume from our revision (history compacted,
      // or a different store): start over with a snapshot.
      spdlog::warn("identity watch from revision {} failed ({}); restarting with a snapshot", revision_,
                   status.error_message());
      revision_ = 0;
  }
}

grpc::Status IdentityWatcher::FollowOnce(grpc::ClientContext& context, bool* progressed) {
  identity::v1::WatchIdentitiesRequest request;
  request.set_after_revision(revision_);
  auto reader = stub_->WatchIdentities(&context, request);
  bool in_snapshot = revision_ == 0;
  std::vector<IdentityEntry> snapshot;
  identity::v1::WatchIdentitiesResponse event;
  while (reader->Read(&event)) {
    switch (event.kind()) {
      case identity::v1::CHANGE_KIND_SNAPSHOT:
        snapshot.push_back({event.identity().id(), LabelSetFromProto(event.identity().labels())});
        break;
      case identity::v1::CHANGE_KIND_SNAPSHOT_DONE:
        revision_ = event.revision();
        in_snapshot = false;
        *progressed = true;
        callbacks_.on_snapshot(std::move(snapshot));
        snapshot.clear();
        break;
      case identity::v1::CHANGE_KIND_UPSERT:
        if (!in_snapshot) revision_ = std::max(revision_, event.revision());
        *progressed = true;
        callbacks_.on_upsert({event.identity().id(), LabelSetFromProto(event.identity().labels())});
        break;
      case identity::v1::CHANGE_KIND_DELETE:
        if (!in_snapshot) revision_ = std::max(revision_, event.revision());
        *progressed = true;
        callbacks_.on_delete(event.identity().id());
        break;
      default:
        break;
    }
  }
  return reader->Finish();
}

}  // namespace ebpfcni::policy
