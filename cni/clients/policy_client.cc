#include "cni/clients/policy_client.h"

#include "cni/clients/service_call.h"
#include "common/grpc/channel.h"

namespace ebpfcni::cni {
namespace {
using Stub = policy::v1::PolicyService::Stub;
constexpr absl::string_view kDisplayName = "policy agent";
constexpr absl::string_view kBinary = "ebpf-cni-policy";
}  // namespace

PolicyClient::PolicyClient(std::string target, std::chrono::milliseconds timeout)
    : target_(std::move(target)),
      timeout_(timeout),
      channel_(MakeChannel(target_)),
      stub_(policy::v1::PolicyService::NewStub(channel_)) {}

absl::StatusOr<policy::v1::ResolveEndpointResponse> PolicyClient::ResolveEndpoint(
    const policy::v1::ResolveEndpointRequest& request) {
  return UnaryCall(*stub_, &Stub::ResolveEndpoint, request, timeout_, {kDisplayName, kBinary, target_},
                   "ResolveEndpoint");
}

absl::Status PolicyClient::CheckHealth() {
  return CheckServingHealth(channel_, timeout_, {kDisplayName, kBinary, target_});
}

}  // namespace ebpfcni::cni
