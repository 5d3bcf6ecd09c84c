#include "cni/clients/ipam_client.h"

#include <grpcpp/client_context.h>

#include "cni/clients/service_call.h"
#include "common/grpc/channel.h"

namespace ebpfcni::cni {
namespace {
constexpr absl::string_view kDisplayName = "IPAM service";
constexpr absl::string_view kBinary = "ebpf-cni-ipam";
}  // namespace

IpamClient::IpamClient(std::string target, std::chrono::milliseconds timeout)
    : target_(std::move(target)),
      timeout_(timeout),
      channel_(MakeChannel(target_)),
      stub_(ipam::v1::IpamService::NewStub(channel_)) {}

absl::Status IpamClient::Describe(const grpc::Status& status, const char* rpc) const {
  return DescribeRpcError(status, {kDisplayName, kBinary, target_}, rpc);
}

absl::StatusOr<ipam::v1::AllocateResponse> IpamClient::Allocate(const ipam::v1::AllocateRequest& request) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  ipam::v1::AllocateResponse response;
  grpc::Status status = stub_->Allocate(&context, request, &response);
  if (!status.ok()) return Describe(status, "Allocate");
  return response;
}

absl::StatusOr<ipam::v1::ReleaseResponse> IpamClient::Release(const std::string& container_id,
                                                              const std::string& ifname) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  ipam::v1::ReleaseRequest request;
  request.mutable_attachment()->set_container_id(container_id);
  request.mutable_attachment()->set_interface_name(ifname);
  ipam::v1::ReleaseResponse response;
  grpc::Status status = stub_->Release(&context, request, &response);
  if (!status.ok()) return Describe(status, "Release");
  return response;
}

absl::StatusOr<std::vector<ipam::v1::Allocation>> IpamClient::ListAllocations(const std::string& container_id) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  ipam::v1::ListAllocationsRequest request;
  request.set_container_id(container_id);
  ipam::v1::ListAllocationsResponse response;
  grpc::Status status = stub_->ListAllocations(&context, request, &response);
  if (!status.ok()) return Describe(status, "ListAllocations");
  return std::vector<ipam::v1::Allocation>(response.allocations().begin(), response.allocations().end());
}

absl::StatusOr<ipam::v1::GarbageCollectResponse> IpamClient::GarbageCollect(
    const ipam::v1::GarbageCollectRequest& request) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  ipam::v1::GarbageCollectResponse response;
  grpc::Status status = stub_->GarbageCollect(&context, request, &response);
  if (!status.ok()) return Describe(status, "GarbageCollect");
  return response;
}

absl::StatusOr<std::vector<ipam::v1::Pool>> IpamClient::ListPools() {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  ipam::v1::ListPoolsResponse response;
  grpc::Status status = stub_->ListPools(&context, ipam::v1::ListPoolsRequest(), &response);
  if (!status.ok()) return Describe(status, "ListPools");
  return std::vector<ipam::v1::Pool>(response.pools().begin(), response.pools().end());
}

absl::Status IpamClient::CheckHealth() {
  return CheckServingHealth(channel_, timeout_, {kDisplayName, kBinary, target_});
}

}  // namespace ebpfcni::cni
