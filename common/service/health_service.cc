#include "common/service/health_service.h"

#include <chrono>

namespace ebpfcni {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

void HealthService::SetStatus(const std::string& service, ServingStatus status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return;
  statuses_[service] = status;
  changed_.notify_all();
}

void HealthService::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutting_down_ = true;
  for (auto& [name, status] : statuses_) status = HealthCheckResponse::NOT_SERVING;
  changed_.notify_all();
}

grpc::Status HealthService::Check(grpc::ServerContext*, const HealthCheckRequest* request,
                                  HealthCheckResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = statuses_.find(request->service());
  if (it == statuses_.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown service \"" + request->service() + "\"; ask for \"\" or a hosted service name");
  }
  response->set_status(it->second);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* context, const HealthCheckRequest* request,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  std::unique_lock<std::mutex> lock(mu_);
  bool first = true;
  ServingStatus last = HealthCheckResponse::UNKNOWN;
  while (!context->IsCancelled()) {
    auto it = statuses_.find(request->service());
    // Per the health protocol, an unknown service is SERVICE_UNKNOWN on Watch.
    ServingStatus current = it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN : it->second;
    if (first || current != last) {
      HealthCheckResponse response;
      response.set_status(current);
      lock.unlock();
      bool ok = writer->Write(response);
      lock.lock();
      if (!ok) break;
      first = false;
      last = current;
    }
    if (shutting_down_) break;
    // Wake up periodically to notice cancelled clients.
    changed_.wait_for(lock, std::chrono::seconds(1));
  }
  return grpc::Status::OK;
}

}  // namespace ebpfcni
