// CNI DEL.
//
// Must succeed when anything (or everything) is already gone, when
// CNI_NETNS is empty, without prevResult, and when called twice.
//
// Order: identity ReleaseIdentity -> datapath DeleteEndpoint ->
// TeardownPodNetwork -> IPAM Release.
//
// The endpoint is the only record of which identity the attachment holds a
// reference to, so the reference is dropped first: if the identity service
// is unreachable, DEL returns 11 before changing anything else and the
// retried DEL finds the endpoint (and the identity) again. If the identity
// service answers but refuses the release (other than NOT_FOUND: nothing to
// release), retrying cannot help, so DEL logs the leaked reference and goes
// on: a pod whose DEL can never succeed is worse than an identity that is
// not garbage collected.
// The address is released last and only when the endpoint and the
// interface are known to be gone: releasing it earlier could hand it to a
// new pod while the old endpoint still answers for it. So when a service is
// unreachable we still remove what we can, keep the address, and return
// code 11 (try again later); the runtime retries DEL and the retry finishes
// the job.
#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "cni/plugin/commands/attachment_addresses.h"
#include "cni/plugin/commands/commands.h"
#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

// Addresses for the host routes to remove. Removing the host veth removes
// its routes too, so not knowing them is not fatal.
AttachmentAddresses AddressesToRemove(CommandContext& context) {
  const CniEnvironment& env = context.env;
  if (context.config.prev_result) return FromPrevResult(*context.config.prev_result, env.ifname);
  absl::StatusOr<std::vector<ipam::v1::Allocation>> allocations = context.ipam.ListAllocations(env.container_id);
  if (!allocations.ok()) {
    spdlog::warn("DEL {}/{}: no prevResult and IPAM cannot list allocations ({}); tearing down without "
                 "addresses", env.container_id, env.ifname, std::string(allocations.status().message()));
    return {};
  }
  for (const ipam::v1::Allocation& allocation : *allocations) {
    if (allocation.attachment().container_id() != env.container_id ||
        allocation.attachment().interface_name() != env.ifname) {
      continue;
    }
    absl::StatusOr<AttachmentAddresses> addresses = FromIpamAssignments(allocation.ips());
    if (addresses.ok()) return *addresses;
  }
  return {};
}

bool IsUnreachable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kDeadlineExceeded;
}

// Drops the attachment's reference to the endpoint's identity. Returns an
// error only when DEL must stop here (identity service unreachable).
absl::Status ReleaseEndpointIdentity(CommandContext& context, const datapath::v1::Endpoint& endpoint) {
  const CniEnvironment& env = context.env;
  const uint32_t id = endpoint.identity();
  if (id < kFirstAllocatableIdentity) return absl::OkStatus();  // none, or reserved: no reference
  identity::v1::Owner owner = IdentityOwnerFor(env);
  absl::StatusOr<uint32_t> remaining = context.identity.ReleaseIdentity(id, owner);
  if (remaining.ok()) {
    spdlog::info("DEL {}/{}: released identity {} ({} reference(s) left)", env.container_id, env.ifname, id,
                 *remaining);
    return absl::OkStatus();
  }
  if (IsUnreachable(remaining.status())) {
    return CniStatus(CniCodeFor(remaining.status()), remaining.status().message(),
                     absl::StrCat("nothing was removed: a retried DEL releases identity ", id,
                                  " and then removes the attachment"));
  }
  if (remaining.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
  spdlog::error("DEL {}/{}: identity {} keeps the reference of owner {}/{}: {}", env.container_id, env.ifname, id,
                owner.node(), owner.endpoint(), std::string(remaining.status().message()));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunDel(CommandContext& context) {
  const CniEnvironment& env = context.env;
  absl::Status first_error;
  auto record = [&](absl::Status status) {
    if (status.ok()) return;
    spdlog::error("DEL {}/{}: {}", env.container_id, env.ifname, std::string(status.message()));
    if (first_error.ok()) first_error = std::move(status);
  };

  // Without the endpoint we cannot know its identity: when the datapath
  // cannot say, keep the endpoint (and so the address) for the retry.
  absl::StatusOr<bool> deleted = false;
  absl::StatusOr<datapath::v1::Endpoint> endpoint = context.datapath.GetEndpoint(env.container_id, env.ifname);
  if (endpoint.ok()) {
    if (absl::Status released = ReleaseEndpointIdentity(context, *endpoint); !released.ok()) {
      spdlog::error("DEL {}/{}: {}", env.container_id, env.ifname, std::string(released.message()));
      return released;
    }
  }
  if (endpoint.ok() || endpoint.status().code() == absl::StatusCode::kNotFound) {
    deleted = context.datapath.DeleteEndpoint(env.container_id, env.ifname);
  } else {
    deleted = endpoint.status();
  }
  record(deleted.status());

  AttachmentAddresses addresses = AddressesToRemove(context);
  net::PodNetworkSpec spec = PodSpecFor(context, addresses);
  absl::Status teardown = context.network.Teardown(spec);
  record(WithCniCode(Annotate(teardown, absl::StrCat("removing host veth ", spec.host_ifname)),
                     code::kHostNetworkFailure));

  if (deleted.ok() && teardown.ok()) {
    absl::StatusOr<ipam::v1::ReleaseResponse> released = context.ipam.Release(env.container_id, env.ifname);
    record(released.status());
    if (released.ok()) {
      spdlog::info("DEL {}/{}: endpoint {}, veth {} removed, {} address(es) released", env.container_id,
                   env.ifname, *deleted ? "deleted" : "already gone", spec.host_ifname,
                   released->released_count());
    }
  } else {
    spdlog::warn("DEL {}/{}: keeping the IPAM allocation until the endpoint and interface are gone",
                 env.container_id, env.ifname);
  }
  return first_error;
}

}  // namespace ebpfcni::cni
