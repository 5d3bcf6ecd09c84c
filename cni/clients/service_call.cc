#include "cni/clients/service_call.h"

#include <absl/strings/str_cat.h>
#include <grpcpp/client_context.h>

#include "common/grpc/channel.h"
#include "common/grpc/status.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace ebpfcni::cni {

absl::Status DescribeRpcError(const grpc::Status& status, const ServiceIdentity& service, absl::string_view rpc) {
  if (status.ok()) return absl::OkStatus();
  absl::Status converted = FromGrpcStatus(status);
  std::string message;
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      message = absl::StrCat(service.display_name, " unreachable at ", service.target, " (", rpc,
                             "): ", status.error_message(), " — is ", service.binary,
                             " running? (deploy/local/up.sh)");
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      message = absl::StrCat(service.display_name, " at ", service.target, " did not answer ", rpc,
                             " in time (timeoutMs in the network config): ", status.error_message(),
                             " — is ", service.binary, " overloaded or stuck?");
      break;
    default:
      message = absl::StrCat(service.display_name, " at ", service.target, " failed ", rpc, ": ",
                             status.error_message());
      break;
  }
  return absl::Status(converted.code(), message);
}

absl::Status CheckServingHealth(const std::shared_ptr<grpc::Channel>& channel, std::chrono::milliseconds timeout,
                                const ServiceIdentity& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  grpc::health::v1::HealthCheckRequest request;  // "" = the server as a whole
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return DescribeRpcError(status, service, "grpc.health.v1.Health/Check");
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat(
        service.display_name, " at ", service.target, " is running but reports ",
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()),
        " — check the logs of ", service.binary));
  }
  return absl::OkStatus();
}

}  // namespace ebpfcni::cni
