#include "cni/clients/identity_client.h"

#include "cni/clients/service_call.h"
#include "common/grpc/channel.h"

namespace ebpfcni::cni {
namespace {
using Stub = identity::v1::IdentityService::Stub;
constexpr absl::string_view kDisplayName = "identity service";
constexpr absl::string_view kBinary = "ebpf-cni-identity";
}  // namespace

IdentityClient::IdentityClient(std::string target, std::chrono::milliseconds timeout)
    : target_(std::move(target)),
      timeout_(timeout),
      // Replicas: "a.sock,b.sock" are balanced over, with failover.
      channel_(MakeChannelForTargets(target_)),
      stub_(identity::v1::IdentityService::NewStub(channel_)) {}

absl::StatusOr<identity::v1::Identity> IdentityClient::ResolvePod(const identity::v1::ResolvePodRequest& request) {
  absl::StatusOr<identity::v1::ResolvePodResponse> response =
      UnaryCall(*stub_, &Stub::ResolvePod, request, timeout_, {kDisplayName, kBinary, target_}, "ResolvePod");
  if (!response.ok()) return response.status();
  return response->identity();
}

absl::StatusOr<uint32_t> IdentityClient::ReleaseIdentity(uint32_t id, const identity::v1::Owner& owner) {
  identity::v1::ReleaseIdentityRequest request;
  request.set_id(id);
  *request.mutable_owner() = owner;
  absl::StatusOr<identity::v1::ReleaseIdentityResponse> response = UnaryCall(
      *stub_, &Stub::ReleaseIdentity, request, timeout_, {kDisplayName, kBinary, target_}, "ReleaseIdentity");
  if (!response.ok()) return response.status();
  return response->remaining_references();
}

absl::Status IdentityClient::CheckHealth() {
  return CheckServingHealth(channel_, timeout_, {kDisplayName, kBinary, target_});
}

}  // namespace ebpfcni::cni
