#include "services/datapath/datapath_service.h"

#include "common/grpc/status.h"

namespace ebpfcni::datapath {
namespace {

EndpointKey FromProto(const v1::EndpointKey& key) {
  return EndpointKey{key.container_id(), key.interface_name()};
}

void ToProto(const EndpointKey& key, v1::EndpointKey* out) {
  out->set_container_id(key.container_id);
  out->set_interface_name(key.interface_name);
}

v1::AttachmentState ToProto(AttachmentState state) {
  switch (state) {
    case AttachmentState::kAttached:
      return v1::ATTACHMENT_STATE_ATTACHED;
    case AttachmentState::kInterfaceGone:
      return v1::ATTACHMENT_STATE_INTERFACE_GONE;
    case AttachmentState::kDetached:
      break;
  }
  return v1::ATTACHMENT_STATE_UNSPECIFIED;
}

void ToProto(const EndpointStatus& status, v1::Endpoint* out) {
  const EndpointRecord& r = status.record;
  ToProto(r.key, out->mutable_key());
  out->set_endpoint_id(r.endpoint_id);
  out->set_host_ifindex(r.host_ifindex);
  out->set_host_interface_name(r.host_interface_name);
  out->set_netns_path(r.netns_path);
  for (const std::string& address : r.addresses) out->add_addresses(address);
  out->set_pod_namespace(r.pod_namespace);
  out->set_pod_name(r.pod_name);
  v1::TrafficCounters* counters = out->mutable_counters();
  counters->set_from_pod_packets(status.counters.from_pod_packets);
  counters->set_from_pod_bytes(status.counters.from_pod_bytes);
  counters->set_to_pod_packets(status.counters.to_pod_packets);
  counters->set_to_pod_bytes(status.counters.to_pod_bytes);
  out->set_state(ToProto(status.state));
}

}  // namespace

grpc::Status DatapathServiceImpl::CreateEndpoint(grpc::ServerContext*,
                                                 const v1::CreateEndpointRequest* request,
                                                 v1::CreateEndpointResponse* response) {
  EndpointRecord record;
  record.key = FromProto(request->key());
  record.host_ifindex = request->host_ifindex();
  record.host_interface_name = request->host_interface_name();
  record.netns_path = request->netns_path();
  record.addresses.assign(request->addresses().begin(), request->addresses().end());
  record.pod_namespace = request->pod_namespace();
  record.pod_name = request->pod_name();
  absl::StatusOr<EndpointStatus> created = manager_->CreateEndpoint(record);
  if (!created.ok()) return ToGrpcStatus(created.status());
  ToProto(*created, response->mutable_endpoint());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::DeleteEndpoint(grpc::ServerContext*,
                                                 const v1::DeleteEndpointRequest* request,
                                                 v1::DeleteEndpointResponse* response) {
  absl::StatusOr<bool> deleted = manager_->DeleteEndpoint(FromProto(request->key()));
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  response->set_deleted(*deleted);
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::GetEndpoint(grpc::ServerContext*,
                                              const v1::GetEndpointRequest* request,
                                              v1::GetEndpointResponse* response) {
  absl::StatusOr<EndpointStatus> endpoint = manager_->GetEndpoint(FromProto(request->key()));
  if (!endpoint.ok()) return ToGrpcStatus(endpoint.status());
  ToProto(*endpoint, response->mutable_endpoint());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::ListEndpoints(grpc::ServerContext*,
                                                const v1::ListEndpointsRequest*,
                                                v1::ListEndpointsResponse* response) {
  absl::StatusOr<std::vector<EndpointStatus>> endpoints = manager_->ListEndpoints();
  if (!endpoints.ok()) return ToGrpcStatus(endpoints.status());
  for (const EndpointStatus& endpoint : *endpoints) ToProto(endpoint, response->add_endpoints());
  return grpc::Status::OK;
}

grpc::Status DatapathServiceImpl::GarbageCollectEndpoints(
    grpc::ServerContext*, const v1::GarbageCollectEndpointsRequest* request,
    v1::GarbageCollectEndpointsResponse* response) {
  std::vector<EndpointKey> valid;
  for (const v1::EndpointKey& key : request->valid_endpoints()) valid.push_back(FromProto(key));
  absl::StatusOr<std::vector<EndpointKey>> deleted = manager_->GarbageCollect(valid);
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  for (const EndpointKey& key : *deleted) ToProto(key, response->add_deleted());
  return grpc::Status::OK;
}

}  // namespace ebpfcni::datapath
