// CNI GC (spec 1.1): free everything of this network whose attachment is
// not in cni.dev/valid-attachments.
//
// Scope. The services are shared by every ebpf-cni network of the node, and
// the runtime's valid list names only this network's attachments, so "not
// valid" must not mean "collect": an attachment is this network's when
//   - IPAM recorded it under this network's name (ADD sends the name), or
//   - IPAM has no allocation for it at all (a leftover endpoint) and its
//     host veth has the name this network would give it (hostVethPrefix).
// Everything else is left alone: attachments IPAM recorded under another
// network, and those recorded without a network name (allocated before
// names were recorded): which network they belong to cannot be told, and
// collecting a live pod is worse than keeping a leftover until its DEL.
//
// Order, per collected attachment, as DEL: the datapath endpoint goes first,
// then the identity reference it held (only once the endpoint is gone, so
// no live endpoint ever runs with an identity that could be recycled), then
// the host veth; only then does IPAM free the addresses (scoped to this
// network, so an allocation another network makes meanwhile is never a
// candidate). An attachment whose endpoint or veth could not be removed
// keeps its addresses until a later GC or DEL.
//
// Endpoints are deleted one by one (DeleteEndpoint), not with the
// datapath's GarbageCollectEndpoints: that takes a valid list, and an
// endpoint another network creates between our listing and the call would
// not be on it.
#include <map>
#include <set>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "cni/plugin/commands/commands.h"
#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

bool IsUnreachable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kDeadlineExceeded;
}

class GarbageCollection {
 public:
  explicit GarbageCollection(CommandContext& context) : context_(context) {}

  absl::Status Run();

 private:
  // Which network IPAM recorded each attachment under.
  absl::Status LearnNetworks();
  // The endpoints of this network that are not valid.
  absl::StatusOr<std::vector<datapath::v1::Endpoint>> StaleEndpoints();
  bool IsOurs(const AttachmentRef& attachment, const std::string& host_interface_name) const;
  void CollectEndpoint(const datapath::v1::Endpoint& endpoint);
  // Removes the host veth; false when it could not be.
  bool RemoveHostVeth(const AttachmentRef& attachment);
  void Problem(absl::Status status);

  CommandContext& context_;
  const NetworkConfig& config_ = context_.config;
  std::set<AttachmentRef> valid_;
  std::map<AttachmentRef, std::string> network_of_;  // IPAM allocations
  std::set<AttachmentRef> kept_;                       // could not be cleaned: keep the addresses
  std::set<AttachmentRef> veths_removed_;
  int endpoints_deleted_ = 0;
  int references_released_ = 0;
  absl::Status first_problem_;
};

absl::Status GarbageCollection::Run() {
  if (!config_.valid_attachments) {
    // Without the list "everything is invalid" would delete every pod's
    // network; refuse instead of guessing.
    return CniStatus(code::kInvalidNetworkConfig,
                     "GC needs \"cni.dev/valid-attachments\" (a possibly empty list) in the network config");
  }
  valid_.insert(config_.valid_attachments->begin(), config_.valid_attachments->end());

  // Without IPAM's records nothing can be attributed to a network, and
  // without the datapath's list nothing can be removed in order: collect
  // nothing rather than guess.
  if (absl::Status s = LearnNetworks(); !s.ok()) {
    spdlog::error("GC: {}; nothing collected", std::string(s.message()));
    return s;
  }
  absl::StatusOr<std::vector<datapath::v1::Endpoint>> stale = StaleEndpoints();
  if (!stale.ok()) {
    spdlog::error("GC: {}; nothing collected", std::string(stale.status().message()));
    return stale.status();
  }
  for (const datapath::v1::Endpoint& endpoint : *stale) CollectEndpoint(endpoint);

  // This network's allocations without an endpoint: their veth goes before
  // their addresses do (a leftover from an ADD that failed half-way).
  for (const auto& [attachment, network] : network_of_) {
    if (network != config_.name || valid_.contains(attachment) || veths_removed_.contains(attachment) ||
        kept_.contains(attachment)) {
      continue;
    }
    if (!RemoveHostVeth(attachment)) kept_.insert(attachment);
  }

  ipam::v1::GarbageCollectRequest ipam_request;
  ipam_request.set_network_name(config_.name);
  std::set<AttachmentRef> keep = valid_;
  keep.insert(kept_.begin(), kept_.end());
  for (const AttachmentRef& attachment : keep) {
    ipam::v1::Attachment* out = ipam_request.add_valid_attachments();
    out->set_container_id(attachment.container_id);
    out->set_interface_name(attachment.ifname);
  }
  absl::StatusOr<ipam::v1::GarbageCollectResponse> released = context_.ipam.GarbageCollect(ipam_request);
  Problem(released.status());
  spdlog::info("GC of network {}: {} valid attachment(s); {} endpoint(s) deleted, {} identity reference(s) "
               "released, {} allocation(s) released, {} kept for a retry",
               config_.name, valid_.size(), endpoints_deleted_, references_released_,
               released.ok() ? released->released_size() : 0, kept_.size());
  return first_problem_;
}

absl::Status GarbageCollection::LearnNetworks() {
  absl::StatusOr<std::vector<ipam::v1::Allocation>> allocations = context_.ipam.ListAllocations("");
  if (!allocations.ok()) return allocations.status();
  for (const ipam::v1::Allocation& allocation : *allocations) {
    network_of_[{allocation.attachment().container_id(), allocation.attachment().interface_name()}] =
        allocation.network_name();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<datapath::v1::Endpoint>> GarbageCollection::StaleEndpoints() {
  absl::StatusOr<std::vector<datapath::v1::Endpoint>> endpoints = context_.datapath.ListEndpoints();
  if (!endpoints.ok()) return endpoints.status();
  std::vector<datapath::v1::Endpoint> stale;
  for (datapath::v1::Endpoint& endpoint : *endpoints) {
    AttachmentRef attachment{endpoint.key().container_id(), endpoint.key().interface_name()};
    if (valid_.contains(attachment) || !IsOurs(attachment, endpoint.host_interface_name())) continue;
    stale.push_back(std::move(endpoint));
  }
  return stale;
}

bool GarbageCollection::IsOurs(const AttachmentRef& attachment, const std::string& host_interface_name) const {
  auto recorded = network_of_.find(attachment);
  if (recorded != network_of_.end()) return recorded->second == config_.name;
  return host_interface_name ==
         context_.network.HostVethName(config_.host_veth_prefix, attachment.container_id, attachment.ifname);
}

void GarbageCollection::CollectEndpoint(const datapath::v1::Endpoint& endpoint) {
  const AttachmentRef attachment{endpoint.key().container_id(), endpoint.key().interface_name()};
  absl::StatusOr<bool> deleted = context_.datapath.DeleteEndpoint(attachment.container_id, attachment.ifname);
  if (!deleted.ok()) {
    kept_.insert(attachment);
    Problem(deleted.status());
    return;
  }
  ++endpoints_deleted_;
  // The listed identity is the one the endpoint held when it was removed
  // unless the policy agent changed it in between; releasing an identity
  // this owner holds no reference to is NOT_FOUND, which is harmless.
  const uint32_t id = endpoint.identity();
  if (*deleted && id >= kFirstAllocatableIdentity) {
    absl::StatusOr<uint32_t> remaining =
        context_.identity.ReleaseIdentity(id, IdentityOwnerFor(attachment.container_id, attachment.ifname));
    if (remaining.ok()) {
      ++references_released_;
      spdlog::info("GC: released identity {} of {}/{} ({} reference(s) left)", id, attachment.container_id,
                   attachment.ifname, *remaining);
    } else if (remaining.status().code() != absl::StatusCode::kNotFound) {
      // The endpoint, the only record of the reference, is gone: a retry
      // cannot find it, so say so instead of hiding it.
      Problem(Annotate(remaining.status(), absl::StrCat("identity ", id, " keeps the reference of collected "
                                                        "endpoint ", attachment.container_id, "/",
                                                        attachment.ifname)));
    }
  }
  if (RemoveHostVeth(attachment)) {
    veths_removed_.insert(attachment);
  } else {
    kept_.insert(attachment);
  }
}

bool GarbageCollection::RemoveHostVeth(const AttachmentRef& attachment) {
  net::PodNetworkSpec spec;
  spec.container_ifname = attachment.ifname;  // netns unknown: host side only
  spec.host_ifname =
      context_.network.HostVethName(config_.host_veth_prefix, attachment.container_id, attachment.ifname);
  if (absl::Status s = context_.network.Teardown(spec); !s.ok()) {
    spdlog::warn("GC: could not remove host veth {} of {}/{}: {}; its addresses stay allocated", spec.host_ifname,
                 attachment.container_id, attachment.ifname, std::string(s.message()));
    Problem(WithCniCode(Annotate(s, absl::StrCat("removing host veth ", spec.host_ifname)),
                        code::kHostNetworkFailure));
    return false;
  }
  return true;
}

void GarbageCollection::Problem(absl::Status status) {
  if (status.ok()) return;
  spdlog::error("GC: {}", std::string(status.message()));
  // An unreachable service is the one a retry can fix: report that first.
  if (first_problem_.ok() || (IsUnreachable(status) && !IsUnreachable(first_problem_))) {
    first_problem_ = std::move(status);
  }
}

}  // namespace

absl::Status RunGc(CommandContext& context) {
  GarbageCollection gc(context);
  return gc.Run();
}

}  // namespace ebpfcni::cni
