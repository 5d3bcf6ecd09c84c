#pragma once
// The CNI binary's view of the IPAM service: one call per RPC, each with
// the configured deadline, errors turned into absl::Status whose message
// says which service at which socket failed and what to do about it.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "ebpfcni/ipam/v1/ipam.grpc.pb.h"

namespace ebpfcni::cni {

class IpamClient {
 public:
  // target: socket path or gRPC URI.
  IpamClient(std::string target, std::chrono::milliseconds timeout);

  const std::string& target() const { return target_; }

  absl::StatusOr<ipam::v1::AllocateResponse> Allocate(const ipam::v1::AllocateRequest& request);
  absl::StatusOr<ipam::v1::ReleaseResponse> Release(const std::string& container_id, const std::string& ifname);
  // Allocations of one container (empty id: all).
  absl::StatusOr<std::vector<ipam::v1::Allocation>> ListAllocations(const std::string& container_id);
  absl::StatusOr<ipam::v1::GarbageCollectResponse> GarbageCollect(const ipam::v1::GarbageCollectRequest& request);
  absl::StatusOr<std::vector<ipam::v1::Pool>> ListPools();
  // grpc.health.v1 Check for the whole server; OK only when SERVING.
  absl::Status CheckHealth();

 private:
  std::string target_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ipam::v1::IpamService::Stub> stub_;
};

}  // namespace ebpfcni::cni
