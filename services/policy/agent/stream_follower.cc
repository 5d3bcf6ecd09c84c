#include "services/policy/agent/stream_follower.h"

#include <spdlog/spdlog.h>

#include "services/policy/agent/backoff.h"

namespace ebpfcni::policy {

StreamFollower::~StreamFollower() { Stop(); }

void StreamFollower::Start() { thread_ = std::thread([this] { Run(); }); }

void StreamFollower::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StreamFollower::Run() {
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  while (true) {
    grpc::ClientContext context;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      active_ = &context;
    }
    bool progressed = false;
    grpc::Status status = FollowOnce(context, &progressed);
    std::unique_lock<std::mutex> lock(mu_);
    active_ = nullptr;
    if (stopping_) return;
    lock.unlock();
    OnStreamEnded(status);
    lock.lock();
    if (progressed) backoff.Reset();
    auto delay = backoff.Next();
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      spdlog::error("{}: the service does not implement it (an older build?); retrying in {} ms", what_,
                    delay.count());
    } else {
      spdlog::info("{} ended ({}); reconnecting in {} ms", what_,
                   status.ok() ? std::string("closed by the service") : status.error_message(), delay.count());
    }
    wake_.wait_for(lock, delay, [this] { return stopping_; });
  }
}

}  // namespace ebpfcni::policy
