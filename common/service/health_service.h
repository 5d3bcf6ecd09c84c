#pragma once
// grpc.health.v1.Health compiled from Debian's grpc-proto, so reflection
// clients (grpcurl) can call it; gRPC's built-in health service carries no
// descriptors. Reports SERVING for "" and every registered service name,
// NOT_FOUND for unknown names, and NOT_SERVING to watchers once shutdown
// begins.
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace ebpfcni {

class HealthService final : public grpc::health::v1::Health::Service {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  void SetStatus(const std::string& service, ServingStatus status);
  // Marks every service NOT_SERVING and ends open Watch streams.
  void Shutdown();

  grpc::Status Check(grpc::ServerContext* context, const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context, const grpc::health::v1::HealthCheckRequest* request,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, ServingStatus> statuses_;
  bool shutting_down_ = false;
};

}  // namespace ebpfcni
