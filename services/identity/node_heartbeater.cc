#include "services/identity/node_heartbeater.h"

#include <grpcpp/client_context.h>
#include <spdlog/spdlog.h>

#include "common/grpc/status.h"

namespace ebpfcni::identity {

NodeHeartbeater::NodeHeartbeater(std::shared_ptr<grpc::Channel> channel, Options options,
                                 std::function<void()> on_new_session)
    : stub_(v1::IdentityService::NewStub(std::move(channel))),
      options_(std::move(options)),
      on_new_session_(std::move(on_new_session)) {
  thread_ = std::thread([this] { Loop(); });
}

NodeHeartbeater::~NodeHeartbeater() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

absl::Status NodeHeartbeater::last_status() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_status_;
}

bool NodeHeartbeater::Beat() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(options_.call_timeout));
  v1::NodeHeartbeatRequest request;
  request.set_node(options_.node);
  request.set_ttl_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(absl::Ceil(options_.ttl, absl::Seconds(1)))));
  v1::NodeHeartbeatResponse response;
  grpc::Status status = stub_->NodeHeartbeat(&context, request, &response);
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_status_ = FromGrpcStatus(status);
  }
  if (!status.ok()) {
    spdlog::warn("identity heartbeat of node {} failed: {}", options_.node, status.error_message());
    return false;
  }
  if (response.new_session()) {
    spdlog::info("node {} has a new identity session (TTL {}s); re-asserting its references", options_.node,
                 response.ttl_seconds());
    if (on_new_session_) on_new_session_();
  }
  return true;
}

void NodeHeartbeater::Loop() {
  // Three tries per TTL: one lost heartbeat never ends the session.
  const auto period = absl::ToChronoMilliseconds(options_.ttl / 3);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    bool reached = Beat();
    lock.lock();
    cv_.wait_for(lock, reached ? period : std::min<std::chrono::milliseconds>(period, std::chrono::seconds(1)),
                 [&] { return stopping_; });
  }
}

}  // namespace ebpfcni::identity
