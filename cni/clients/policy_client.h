#pragma once
// The CNI binary's view of the node's policy agent (`ebpf-cni-policy`, see
// ipam_client.h for the conventions). Used by ADD when the conflist names a
// `policySocket`: the agent looks the pod up in the cluster state, resolves
// its security identity (holding the reference for the attachment's owner)
// and returns the policy the endpoint must start with, so the datapath
// endpoint is created with both and never exists unprotected.
#include <chrono>
#include <memory>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "ebpfcni/policy/v1/policy.grpc.pb.h"

namespace ebpfcni::cni {

class PolicyClient {
 public:
  // target: socket path or gRPC URI.
  PolicyClient(std::string target, std::chrono::milliseconds timeout);

  const std::string& target() const { return target_; }

  // Identity (with a reference held by request.owner) and initial policy
  // of the pod about to be attached.
  absl::StatusOr<policy::v1::ResolveEndpointResponse> ResolveEndpoint(
      const policy::v1::ResolveEndpointRequest& request);
  // grpc.health.v1 Check for the whole server; OK only when SERVING.
  absl::Status CheckHealth();

 private:
  std::string target_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<policy::v1::PolicyService::Stub> stub_;
};

}  // namespace ebpfcni::cni
