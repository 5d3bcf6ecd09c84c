#pragma once
// Helpers shared by the service clients: turning a failed RPC into a status
// a person can act on, and the grpc.health.v1 readiness probe.
#include <chrono>
#include <memory>
#include <string>
#include <absl/strings/string_view.h>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "common/grpc/channel.h"

namespace ebpfcni::cni {

// Who we were talking to, for messages.
struct ServiceIdentity {
  absl::string_view display_name;  // "IPAM service"
  absl::string_view binary;        // "ebpf-cni-ipam"
  std::string target;             // socket path / URI
};

// Keeps the gRPC code (so UNAVAILABLE/DEADLINE_EXCEEDED still map to CNI
// code 11) and writes e.g. "IPAM service unreachable at /run/ebpf-cni/
// ipam.sock (Allocate): connect failed — is ebpf-cni-ipam running?
// (deploy/local/up.sh)".
absl::Status DescribeRpcError(const grpc::Status& status, const ServiceIdentity& service, absl::string_view rpc);

// OK when the server answers grpc.health.v1.Health/Check("") with SERVING
// within timeout; UNAVAILABLE (described as above) otherwise.
absl::Status CheckServingHealth(const std::shared_ptr<grpc::Channel>& channel, std::chrono::milliseconds timeout,
                                const ServiceIdentity& service);

// One unary call with the deadline applied and failures described, e.g.
//   UnaryCall(*stub_, &Stub::Allocate, request, timeout_, identity, "Allocate").
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> UnaryCall(Stub& stub,
                                   grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                                   const Request& request, std::chrono::milliseconds timeout,
                                   const ServiceIdentity& service, absl::string_view rpc) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  Response response;
  grpc::Status status = (stub.*method)(&context, request, &response);
  if (!status.ok()) return DescribeRpcError(status, service, rpc);
  return response;
}

}  // namespace ebpfcni::cni
