#include "services/policy/agent/endpoint_watcher.h"

#include <spdlog/spdlog.h>

#include "services/policy/agent/backoff.h"

namespace ebpfcni::policy {

EndpointWatcher::EndpointWatcher(std::shared_ptr<grpc::Channel> channel, Callbacks callbacks)
    : stub_(datapath::v1::DatapathService::NewStub(std::move(channel))), callbacks_(std::move(callbacks)) {}

EndpointWatcher::~EndpointWatcher() { Stop(); }

void EndpointWatcher::Start() { thread_ = std::thread([this] { Run(); }); }

void EndpointWatcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EndpointWatcher::Run() {
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  while (true) {
    bool got_snapshot = false;
    grpc::Status status = WatchOnce(&got_snapshot);
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    if (got_snapshot) backoff.Reset();
    auto delay = backoff.Next();
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      spdlog::error("the datapath service does not implement WatchEndpoints (older build?); retrying in {} ms",
                    delay.count());
    } else {
      spdlog::info("endpoint watch ended ({}); reconnecting in {} ms", status.error_message(), delay.count());
    }
    wake_.wait_for(lock, delay, [this] { return stopping_; });
    if (stopping_) return;
  }
}

grpc::Status EndpointWatcher::WatchOnce(bool* got_snapshot) {
  grpc::ClientContext context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return grpc::Status::CANCELLED;
    active_ = &context;
  }
  auto reader = stub_->WatchEndpoints(&context, datapath::v1::WatchEndpointsRequest());
  std::vector<datapath::v1::Endpoint> snapshot;
  datapath::v1::WatchEndpointsResponse event;
  while (reader->Read(&event)) {
    switch (event.change()) {
      case datapath::v1::ENDPOINT_CHANGE_SNAPSHOT:
        snapshot.push_back(event.endpoint());
        break;
      case datapath::v1::ENDPOINT_CHANGE_SNAPSHOT_DONE:
        *got_snapshot = true;
        callbacks_.on_snapshot(std::move(snapshot));
        snapshot.clear();
        break;
      case datapath::v1::ENDPOINT_CHANGE_CREATED:
      case datapath::v1::ENDPOINT_CHANGE_UPDATED:
        callbacks_.on_upsert(event.endpoint());
        break;
      case datapath::v1::ENDPOINT_CHANGE_DELETED:
        callbacks_.on_delete(event.endpoint().key());
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
