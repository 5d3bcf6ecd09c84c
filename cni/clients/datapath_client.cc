#include "cni/clients/datapath_client.h"

#include "cni/clients/service_call.h"
#include "common/grpc/channel.h"

namespace ebpfcni::cni {
namespace {
using Stub = datapath::v1::DatapathService::Stub;
constexpr absl::string_view kDisplayName = "datapath service";
constexpr absl::string_view kBinary = "ebpf-cni-datapath";

datapath::v1::EndpointKey Key(const std::string& container_id, const std::string& ifname) {
  datapath::v1::EndpointKey key;
  key.set_container_id(container_id);
  key.set_interface_name(ifname);
  return key;
}
}  // namespace

DatapathClient::DatapathClient(std::string target, std::chrono::milliseconds timeout)
    : target_(std::move(target)),
      timeout_(timeout),
      channel_(MakeChannel(target_)),
      stub_(datapath::v1::DatapathService::NewStub(channel_)) {}

void DatapathClient::StartConnecting() { channel_->GetState(/*try_to_connect=*/true); }

absl::StatusOr<datapath::v1::Endpoint> DatapathClient::CreateEndpoint(
    const datapath::v1::CreateEndpointRequest& request) {
  absl::StatusOr<datapath::v1::CreateEndpointResponse> response = UnaryCall(
      *stub_, &Stub::CreateEndpoint, request, timeout_, {kDisplayName, kBinary, target_}, "CreateEndpoint");
  if (!response.ok()) return response.status();
  return response->endpoint();
}

absl::StatusOr<bool> DatapathClient::DeleteEndpoint(const std::string& container_id, const std::string& ifname) {
  datapath::v1::DeleteEndpointRequest request;
  *request.mutable_key() = Key(container_id, ifname);
  absl::StatusOr<datapath::v1::DeleteEndpointResponse> response = UnaryCall(
      *stub_, &Stub::DeleteEndpoint, request, timeout_, {kDisplayName, kBinary, target_}, "DeleteEndpoint");
  if (!response.ok()) return response.status();
  return response->deleted();
}

absl::StatusOr<datapath::v1::Endpoint> DatapathClient::GetEndpoint(const std::string& container_id,
                                                                  const std::string& ifname) {
  datapath::v1::GetEndpointRequest request;
  *request.mutable_key() = Key(container_id, ifname);
  absl::StatusOr<datapath::v1::GetEndpointResponse> response = UnaryCall(
      *stub_, &Stub::GetEndpoint, request, timeout_, {kDisplayName, kBinary, target_}, "GetEndpoint");
  if (!response.ok()) return response.status();
  return response->endpoint();
}

absl::StatusOr<std::vector<datapath::v1::Endpoint>> DatapathClient::ListEndpoints() {
  absl::StatusOr<datapath::v1::ListEndpointsResponse> response =
      UnaryCall(*stub_, &Stub::ListEndpoints, datapath::v1::ListEndpointsRequest(), timeout_,
                {kDisplayName, kBinary, target_}, "ListEndpoints");
  if (!response.ok()) return response.status();
  return std::vector<datapath::v1::Endpoint>(response->endpoints().begin(), response->endpoints().end());
}

absl::Status DatapathClient::CheckHealth() {
  return CheckServingHealth(channel_, timeout_, {kDisplayName, kBinary, target_});
}

}  // namespace ebpfcni::cni
