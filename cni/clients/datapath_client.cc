#include "cni/clients/datapath_client.h"

#include <grpcpp/client_context.h>

#include "cni/clients/service_call.h"
#include "common/grpc/channel.h"

namespace ebpfcni::cni {
namespace {
constexpr absl::string_view kDisplayName = "datapath service";
constexpr absl::string_view kBinary = "ebpf-cni-datapath";
}  // namespace

DatapathClient::DatapathClient(std::string target, std::chrono::milliseconds timeout)
    : target_(std::move(target)),
      timeout_(timeout),
      channel_(MakeChannel(target_)),
      stub_(datapath::v1::DatapathService::NewStub(channel_)) {}

absl::Status DatapathClient::Describe(const grpc::Status& status, const char* rpc) const {
  return DescribeRpcError(status, {kDisplayName, kBinary, target_}, rpc);
}

absl::StatusOr<datapath::v1::Endpoint> DatapathClient::CreateEndpoint(
    const datapath::v1::CreateEndpointRequest& request) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  datapath::v1::CreateEndpointResponse response;
  grpc::Status status = stub_->CreateEndpoint(&context, request, &response);
  if (!status.ok()) return Describe(status, "CreateEndpoint");
  return response.endpoint();
}

absl::StatusOr<bool> DatapathClient::DeleteEndpoint(const std::string& container_id, const std::string& ifname) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  datapath::v1::DeleteEndpointRequest request;
  request.mutable_key()->set_container_id(container_id);
  request.mutable_key()->set_interface_name(ifname);
  datapath::v1::DeleteEndpointResponse response;
  grpc::Status status = stub_->DeleteEndpoint(&context, request, &response);
  if (!status.ok()) return Describe(status, "DeleteEndpoint");
  return response.deleted();
}

absl::StatusOr<datapath::v1::Endpoint> DatapathClient::GetEndpoint(const std::string& container_id,
                                                                  const std::string& ifname) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  datapath::v1::GetEndpointRequest request;
  request.mutable_key()->set_container_id(container_id);
  request.mutable_key()->set_interface_name(ifname);
  datapath::v1::GetEndpointResponse response;
  grpc::Status status = stub_->GetEndpoint(&context, request, &response);
  if (!status.ok()) return Describe(status, "GetEndpoint");
  return response.endpoint();
}

absl::StatusOr<datapath::v1::GarbageCollectEndpointsResponse> DatapathClient::GarbageCollectEndpoints(
    const datapath::v1::GarbageCollectEndpointsRequest& request) {
  grpc::ClientContext context;
  SetDeadline(context, timeout_);
  datapath::v1::GarbageCollectEndpointsResponse response;
  grpc::Status status = stub_->GarbageCollectEndpoints(&context, request, &response);
  if (!status.ok()) return Describe(status, "GarbageCollectEndpoints");
  return response;
}

absl::Status DatapathClient::CheckHealth() {
  return CheckServingHealth(channel_, timeout_, {kDisplayName, kBinary, target_});
}

}  // namespace ebpfcni::cni
