#include "services/policy/agent/identity_watcher.h"

#include <spdlog/spdlog.h>

#include "services/policy/agent/backoff.h"

namespace ebpfcni::policy {

identity::LabelSet LabelSetFromProto(const google::protobuf::RepeatedPtrField<identity::v1::Label>& labels) {
  std::vector<identity::Label> out;
  out.reserve(labels.size());
  for (const auto& l : labels) out.push_back({l.source(), l.key(), l.value()});
  return identity::LabelSet(std::move(out));
}

IdentityWatcher::IdentityWatcher(std::shared_ptr<grpc::Channel> channel, Callbacks callbacks)
    : stub_(identity::v1::IdentityService::NewStub(std::move(channel))), callbacks_(std::move(callbacks)) {}

IdentityWatcher::~IdentityWatcher() { Stop(); }

void IdentityWatcher::Start() { thread_ = std::thread([this] { Run(); }); }

void IdentityWatcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void IdentityWatcher::Run() {
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  while (true) {
    grpc::Status status = WatchOnce();
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    switch (status.error_code()) {
      case grpc::StatusCode::OK:
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::CANCELLED:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        // The service went away or ended the stream (shutdown): resume.
        break;
      default:
        // The service cannot resume from our revision (history compacted,
        // or a different store): start over with a snapshot.
        spdlog::warn("identity watch from revision {} failed ({}); restarting with a snapshot", revision_,
                     status.error_message());
        revision_ = 0;
    }
    auto delay = backoff.Next();
    spdlog::info("identity watch ended ({}); reconnecting in {} ms", status.error_message(), delay.count());
    wake_.wait_for(lock, delay, [this] { return stopping_; });
    if (stopping_) return;
    if (status.ok()) backoff.Reset();
  }
}

grpc::Status IdentityWatcher::WatchOnce() {
  grpc::ClientContext context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return grpc::Status::CANCELLED;
    active_ = &context;
  }
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
        callbacks_.on_snapshot(std::move(snapshot));
        snapshot.clear();
        break;
      case identity::v1::CHANGE_KIND_UPSERT:
        if (!in_snapshot) revision_ = std::max(revision_, event.revision());
        callbacks_.on_upsert({event.identity().id(), LabelSetFromProto(event.identity().labels())});
        break;
      case identity::v1::CHANGE_KIND_DELETE:
        if (!in_snapshot) revision_ = std::max(revision_, event.revision());
        callbacks_.on_delete(event.identity().id());
        break;
      default:
        break;
    }
  }
  grpc::Status status = reader->Finish();
  std::lock_guard<std::mutex> lock(mu_);
  active_ = nullptr;
  return status;
}

}  // namespace ebpfcni::policy
