#pragma once
// Conversions between absl::Status (used inside every component) and
// grpc::Status (on the wire). Codes map one to one: both follow
// google.rpc.Code.
#include <absl/status/status.h>
#include <grpcpp/support/status.h>

namespace ebpfcni {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace ebpfcni
