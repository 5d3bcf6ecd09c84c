#include "services/identity/etcd/etcd_lease.h"

#include <spdlog/spdlog.h>

namespace ebpfcni::identity::etcd {

absl::StatusOr<std::unique_ptr<EtcdLease>> EtcdLease::Grant(EtcdClient& client, int64_t ttl_seconds) {
  if (ttl_seconds < 2) return absl::InvalidArgumentError("lease TTL must be at least 2 seconds");
  auto granted = client.LeaseGrant(ttl_seconds);
  if (!granted.ok()) return granted.status();
  std::unique_ptr<EtcdLease> lease(new EtcdLease(client, granted->id(), granted->ttl()));
  spdlog::info("etcd lease {:x} granted (TTL {}s)", granted->id(), granted->ttl());
  lease->thread_ = std::thread([l = lease.get()] { l->KeepAliveLoop(); });
  return lease;
}

EtcdLease::~EtcdLease() { Abandon(); }

void EtcdLease::Abandon() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (stream_context_) stream_context_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool EtcdLease::WaitStopping(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return stopping_; });
}

void EtcdLease::Regrant() {
  auto granted = client_.LeaseGrant(ttl_seconds_);
  if (!granted.ok()) {
    spdlog::error("cannot grant a new etcd lease: {}", granted.status().ToString());
    return;
  }
  id_.store(granted->id());
  spdlog::warn("etcd lease {:x} granted to replace the expired one; references recorded before are gone",
               granted->id());
}

void EtcdLease::KeepAliveStream() {
  grpc::ClientContext context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stream_context_ = &context;
  }
  auto stream = client_.lease_stub().LeaseKeepAlive(&context);
  // A third of the TTL leaves two more tries before the lease expires.
  const auto interval = std::chrono::milliseconds(ttl_seconds_ * 1000 / 3);
  while (true) {
    int64_t id = id_.load();
    if (id == 0) {
      Regrant();
      if (id_.load() == 0) break;
      continue;
    }
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(id);
    etcdserverpb::LeaseKeepAliveResponse response;
    if (!stream->Write(request) || !stream->Read(&response)) break;
    if (response.ttl() <= 0) {
      spdlog::error("etcd lease {:x} expired (no keep-alive reached etcd within {}s)", id, ttl_seconds_);
      id_.store(0);
      continue;
    }
    if (WaitStopping(interval)) break;
  }
  context.TryCancel();
  grpc::Status status = stream->Finish();
  std::lock_guard<std::mutex> lock(mu_);
  stream_context_ = nullptr;
  if (!stopping_ && !status.ok()) {
    spdlog::warn("etcd lease keep-alive stream broke: {}", status.error_message());
  }
}

void EtcdLease::KeepAliveLoop() {
  while (true) {
    KeepAliveStream();
    if (WaitStopping(std::chrono::milliseconds(500))) return;
  }
}

}  // namespace ebpfcni::identity::etcd
