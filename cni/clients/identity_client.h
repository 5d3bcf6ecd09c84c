#pragma once
// The CNI binary's view of the identity service (see ipam_client.h for the
// conventions): ADD resolves the pod to its security identity before the
// datapath endpoint exists, DEL drops the endpoint's reference.
#include <chrono>
#include <memory>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "ebpfcni/identity/v1/identity.grpc.pb.h"

namespace ebpfcni::cni {

class IdentityClient {
 public:
  // target: socket path or gRPC URI.
  IdentityClient(std::string target, std::chrono::milliseconds timeout);

  const std::string& target() const { return target_; }

  // The pod's identity, taking a reference held by owner.
  absl::StatusOr<identity::v1::Identity> ResolvePod(const identity::v1::ResolvePodRequest& request);
  // Drops owner's reference to id; returns the references left.
  absl::StatusOr<uint32_t> ReleaseIdentity(uint32_t id, const identity::v1::Owner& owner);
  // grpc.health.v1 Check for the whole server; OK only when SERVING.
  absl::Status CheckHealth();

 private:
  std::string target_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<identity::v1::IdentityService::Stub> stub_;
};

}  // namespace ebpfcni::cni
