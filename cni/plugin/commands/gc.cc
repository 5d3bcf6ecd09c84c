// CNI GC (spec 1.1): free everything whose attachment is not in
// cni.dev/valid-attachments.
//
// Same ordering argument as DEL: the datapath forgets stale endpoints
// first; only when that worked does IPAM free their addresses. Host veths
// of attachments either service just forgot are removed too (their names
// are derived from the attachment, so only our own leftovers are touched).
//
// Limitation: the services do not know which CNI network an attachment
// belongs to, so running two ebpf-cni networks on one node with separate GC
// calls would collect each other's attachments.
#include <set>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "cni/plugin/commands/commands.h"
#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

void RemoveHostVeth(CommandContext& context, const AttachmentRef& attachment) {
  net::PodNetworkSpec spec;
  spec.container_ifname = attachment.ifname;  // netns unknown: host side only
  spec.host_ifname =
      context.network.HostVethName(context.config.host_veth_prefix, attachment.container_id, attachment.ifname);
  if (absl::Status s = context.network.Teardown(spec); !s.ok()) {
    spdlog::warn("GC: could not remove host veth {} of {}/{}: {}", spec.host_ifname, attachment.container_id,
                 attachment.ifname, std::string(s.message()));
  }
}

}  // namespace

absl::Status RunGc(CommandContext& context) {
  if (!context.config.valid_attachments) {
    // Without the list "everything is invalid" would delete every pod's
    // network; refuse instead of guessing.
    return CniStatus(code::kInvalidNetworkConfig,
                     "GC needs \"cni.dev/valid-attachments\" (a possibly empty list) in the network config");
  }
  const std::vector<AttachmentRef>& valid = *context.config.valid_attachments;

  datapath::v1::GarbageCollectEndpointsRequest endpoints_request;
  ipam::v1::GarbageCollectRequest ipam_request;
  for (const AttachmentRef& attachment : valid) {
    datapath::v1::EndpointKey* key = endpoints_request.add_valid_endpoints();
    key->set_container_id(attachment.container_id);
    key->set_interface_name(attachment.ifname);
    ipam::v1::Attachment* ipam_attachment = ipam_request.add_valid_attachments();
    ipam_attachment->set_container_id(attachment.container_id);
    ipam_attachment->set_interface_name(attachment.ifname);
  }

  std::set<AttachmentRef> collected;
  absl::StatusOr<datapath::v1::GarbageCollectEndpointsResponse> endpoints =
      context.datapath.GarbageCollectEndpoints(endpoints_request);
  if (!endpoints.ok()) {
    spdlog::error("GC: {}; IPAM garbage collection skipped until the datapath can be cleaned",
                  std::string(endpoints.status().message()));
    return endpoints.status();
  }
  for (const datapath::v1::EndpointKey& key : endpoints->deleted()) {
    collected.insert({key.container_id(), key.interface_name()});
  }

  absl::StatusOr<ipam::v1::GarbageCollectResponse> released = context.ipam.GarbageCollect(ipam_request);
  if (released.ok()) {
    for (const ipam::v1::Attachment& attachment : released->released()) {
      collected.insert({attachment.container_id(), attachment.interface_name()});
    }
  }
  std::set<AttachmentRef> valid_set(valid.begin(), valid.end());
  for (const AttachmentRef& attachment : collected) {
    if (!valid_set.contains(attachment)) RemoveHostVeth(context, attachment);
  }
  spdlog::info("GC: {} valid attachment(s); {} endpoint(s) deleted, {} allocation(s) released", valid.size(),
               endpoints->deleted_size(), released.ok() ? released->released_size() : 0);
  return released.status();
}

}  // namespace ebpfcni::cni
