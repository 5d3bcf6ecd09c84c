#pragma once
// One function per CNI command. The dispatcher (plugin.h) has already
// validated the environment and the config, and checked that the config's
// cniVersion allows the command. Errors carry CNI codes (errors.h).
#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "cni/clients/datapath_client.h"
#include "cni/clients/identity_client.h"
#include "cni/clients/ipam_client.h"
#include "cni/clients/policy_client.h"
#include "cni/plugin/commands/attachment_addresses.h"
#include "cni/plugin/environment.h"
#include "cni/plugin/network_config.h"
#include "cni/plugin/pod_network_ops.h"
#include "cni/plugin/result.h"

namespace ebpfcni::cni {

struct CommandContext {
  const CniEnvironment& env;
  const NetworkConfig& config;
  IpamClient& ipam;
  DatapathClient& datapath;
  IdentityClient& identity;
  PodNetworkOps& network;
  // Set when the config has policySocket: ADD then resolves through the
  // policy agent instead of the identity service (which DEL and rollback
  // still use to drop the reference).
  PolicyClient* policy = nullptr;
};

// The network layer's view of the attachment named by context.env: host
// veth name from the configured prefix, MTU, and the given addresses.
net::PodNetworkSpec PodSpecFor(CommandContext& context, const AttachmentAddresses& addresses);

// Identities below this are reserved (fixed numbers, never reference
// counted: identity.proto), so there is no reference to release.
inline constexpr uint32_t kFirstAllocatableIdentity = 256;

// Who holds the attachment's identity reference: this node and
// "<container id>/<ifname>". ADD takes the reference under this owner and
// DEL drops it, so both must build it the same way.
identity::v1::Owner IdentityOwnerFor(const CniEnvironment& env);
// The same for an attachment other than the command's own (GC).
identity::v1::Owner IdentityOwnerFor(const std::string& container_id, const std::string& ifname);

// IPAM Allocate -> veth/addresses/routes, concurrently with identity
// ResolvePod (or policy agent ResolveEndpoint) -> datapath CreateEndpoint
// (with the identity and policy); rolls everything back on failure (except
// when the attachment already exists).
absl::StatusOr<CniResult> RunAdd(CommandContext& context);
// identity ReleaseIdentity (of the endpoint's identity) -> datapath
// DeleteEndpoint -> teardown -> IPAM Release; idempotent.
absl::Status RunDel(CommandContext& context);
// Compares prevResult with the network, the IPAM allocation and the
// datapath endpoint.
absl::Status RunCheck(CommandContext& context);
// Frees everything of this network not in cni.dev/valid-attachments, and the
// identity references of the endpoints it removes.
absl::Status RunGc(CommandContext& context);
// Readiness: all three services healthy and addresses left.
absl::Status RunStatus(CommandContext& context);

}  // namespace ebpfcni::cni
