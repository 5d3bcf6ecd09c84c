#include "services/ipam/ipam_service.h"

#include <absl/strings/str_join.h>
#include <spdlog/spdlog.h>

#include "common/grpc/status.h"

namespace ebpfcni::ipam {
namespace {

v1::IpFamily ToProto(IpFamily family) {
  return family == IpFamily::kIpv4 ? v1::IP_FAMILY_IPV4 : v1::IP_FAMILY_IPV6;
}

void ToProto(const Assignment& assignment, v1::IpAssignment* out) {
  out->set_family(ToProto(assignment.address.family()));
  out->set_address(assignment.address.ToString());
  out->set_pool_prefix_length(static_cast<uint32_t>(assignment.pool_prefix_length));
  out->set_gateway(assignment.gateway.ToString());
  out->set_pool(assignment.pool);
}

void ToProto(const AttachmentKey& attachment, v1::Attachment* out) {
  out->set_container_id(attachment.container_id);
  out->set_interface_name(attachment.interface_name);
}

AttachmentKey FromProto(const v1::Attachment& attachment) {
  return {attachment.container_id(), attachment.interface_name()};
}

std::string Describe(const std::vector<Assignment>& assignments) {
  return absl::StrJoin(assignments, ", ", [](std::string* out, const Assignment& a) {
    absl::StrAppend(out, a.address.ToString(), " (", a.pool, ")");
  });
}

}  // namespace

grpc::Status IpamServiceImpl::Allocate(grpc::ServerContext*, const v1::AllocateRequest* request,
                                       v1::AllocateResponse* response) {
  const AttachmentKey attachment = FromProto(request->attachment());
  auto result =
      store_.Allocate(attachment, request->pod_namespace(), request->pod_name(), request->network_name());
  if (!result.ok()) {
    spdlog::warn("allocate for container {} interface {} failed: {}", attachment.container_id,
                 attachment.interface_name, result.status().ToString());
    return ToGrpcStatus(result.status());
  }
  for (const Assignment& assignment : result->assignments) ToProto(assignment, response->add_ips());
  response->set_already_allocated(result->already_allocated);
  spdlog::info("{} container {} interface {} (pod {}/{}, network {}): {}",
               result->already_allocated ? "already allocated to" : "allocated to", attachment.container_id,
               attachment.interface_name, request->pod_namespace(), request->pod_name(),
               request->network_name().empty() ? "unnamed" : request->network_name(),
               Describe(result->assignments));
  return grpc::Status::OK;
}

grpc::Status IpamServiceImpl::Release(grpc::ServerContext*, const v1::ReleaseRequest* request,
                                      v1::ReleaseResponse* response) {
  const AttachmentKey attachment = FromProto(request->attachment());
  auto released = store_.Release(attachment);
  if (!released.ok()) {
    spdlog::warn("release for container {} interface {} failed: {}", attachment.container_id,
                 attachment.interface_name, released.status().ToString());
    return ToGrpcStatus(released.status());
  }
  response->set_released_count(static_cast<uint32_t>(released->size()));
  if (released->empty()) {
    spdlog::debug("release: container {} interface {} held nothing", attachment.container_id,
                  attachment.interface_name);
  } else {
    spdlog::info("released from container {} interface {}: {}", attachment.container_id,
                 attachment.interface_name, Describe(*released));
  }
  return grpc::Status::OK;
}

grpc::Status IpamServiceImpl::ListAllocations(grpc::ServerContext*, const v1::ListAllocationsRequest* request,
                                              v1::ListAllocationsResponse* response) {
  std::optional<std::string> container_id;
  if (!request->container_id().empty()) container_id = request->container_id();
  auto records = store_.List(container_id);
  if (!records.ok()) return ToGrpcStatus(records.status());
  for (const AllocationRecord& record : *records) {
    v1::Allocation* out = response->add_allocations();
    ToProto(record.attachment, out->mutable_attachment());
    for (const Assignment& assignment : record.assignments) ToProto(assignment, out->add_ips());
    out->set_pod_namespace(record.pod_namespace);
    out->set_pod_name(record.pod_name);
    out->set_created_unix_ms(record.created_unix_ms);
    out->set_network_name(record.network_name);
  }
  return grpc::Status::OK;
}

grpc::Status IpamServiceImpl::GarbageCollect(grpc::ServerContext*, const v1::GarbageCollectRequest* request,
                                             v1::GarbageCollectResponse* response) {
  std::vector<AttachmentKey> valid;
  valid.reserve(request->valid_attachments_size());
  for (const v1::Attachment& attachment : request->valid_attachments()) valid.push_back(FromProto(attachment));
  std::optional<std::string> network_name;
  if (!request->network_name().empty()) network_name = request->network_name();
  auto freed = store_.GarbageCollect(valid, network_name);
  if (!freed.ok()) {
    spdlog::warn("garbage collection failed: {}", freed.status().ToString());
    return ToGrpcStatus(freed.status());
  }
  for (const AllocationRecord& record : *freed) {
    ToProto(record.attachment, response->add_released());
    spdlog::info("garbage collected from container {} interface {}: {}", record.attachment.container_id,
                 record.attachment.interface_name, Describe(record.assignments));
  }
  return grpc::Status::OK;
}

grpc::Status IpamServiceImpl::ListPools(grpc::ServerContext*, const v1::ListPoolsRequest*,
                                        v1::ListPoolsResponse* response) {
  auto usage = store_.Usage();
  if (!usage.ok()) return ToGrpcStatus(usage.status());
  for (const PoolUsage& u : *usage) {
    v1::Pool* out = response->add_pools();
    out->set_name(u.pool->name());
    out->set_family(ToProto(u.pool->family()));
    out->set_cidr(u.pool->cidr().ToString());
    out->set_gateway(u.pool->gateway().ToString());
    out->set_capacity(u.pool->Capacity());
    out->set_allocated(u.allocated);
  }
  return grpc::Status::OK;
}

}  // namespace ebpfcni::ipam
