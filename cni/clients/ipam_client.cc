#include "cni/clients/ipam_client.h"

#include "cni/clients/service_call.h"
#include "common/grpc/channel.h"

namespace ebpfcni::cni {
namespace {
using Stub = ipam::v1::IpamService::Stub;
constexpr absl::string_view kDisplayName = "IPAM service";
constexpr absl::string_view kBinary = "ebpf-cni-ipam";
}  // namespace

IpamClient::IpamClient(std::string target, std::chrono::milliseconds timeout)
    : target_(std::move(target)),
      timeout_(timeout),
      channel_(MakeChannel(target_)),
      stub_(ipam::v1::IpamService::NewStub(channel_)) {}

absl::StatusOr<ipam::v1::AllocateResponse> IpamClient::Allocate(const ipam::v1::AllocateRequest& request) {
  return UnaryCall(*stub_, &Stub::Allocate, request, timeout_, {kDisplayName, kBinary, target_}, "Allocate");
}

absl::StatusOr<ipam::v1::ReleaseResponse> IpamClient::Release(const std::string& container_id,
                                                              const std::string& ifname) {
  ipam::v1::ReleaseRequest request;
  request.mutable_attachment()->set_container_id(container_id);
  request.mutable_attachment()->set_interface_name(ifname);
  return UnaryCall(*stub_, &Stub::Release, request, timeout_, {kDisplayName, kBinary, target_}, "Release");
}

absl::StatusOr<std::vector<ipam::v1::Allocation>> IpamClient::ListAllocations(const std::string& container_id) {
  ipam::v1::ListAllocationsRequest request;
  request.set_container_id(container_id);
  absl::StatusOr<ipam::v1::ListAllocationsResponse> response = UnaryCall(
      *stub_, &Stub::ListAllocations, request, timeout_, {kDisplayName, kBinary, target_}, "ListAllocations");
  if (!response.ok()) return response.status();
  return std::vector<ipam::v1::Allocation>(response->allocations().begin(), response->allocations().end());
}

absl::StatusOr<ipam::v1::GarbageCollectResponse> IpamClient::GarbageCollect(
    const ipam::v1::GarbageCollectRequest& request) {
  return UnaryCall(*stub_, &Stub::GarbageCollect, request, timeout_, {kDisplayName, kBinary, target_},
                   "GarbageCollect");
}

absl::StatusOr<std::vector<ipam::v1::Pool>> IpamClient::ListPools() {
  absl::StatusOr<ipam::v1::ListPoolsResponse> response = UnaryCall(
      *stub_, &Stub::ListPools, ipam::v1::ListPoolsRequest(), timeout_, {kDisplayName, kBinary, target_},
      "ListPools");
  if (!response.ok()) return response.status();
  return std::vector<ipam::v1::Pool>(response->pools().begin(), response->pools().end());
}

absl::Status IpamClient::CheckHealth() {
  return CheckServingHealth(channel_, timeout_, {kDisplayName, kBinary, target_});
}

}  // namespace ebpfcni::cni
