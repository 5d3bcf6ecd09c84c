#pragma once
// One function per CNI command. The dispatcher (plugin.h) has already
// validated the environment and the config, and checked that the config's
// cniVersion allows the command. Errors carry CNI codes (errors.h).
#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "cni/clients/datapath_client.h"
#include "cni/clients/ipam_client.h"
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
  PodNetworkOps& network;
};

// The network layer's view of the attachment named by context.env: host
// veth name from the configured prefix, MTU, and the given addresses.
net::PodNetworkSpec PodSpecFor(CommandContext& context, const AttachmentAddresses& addresses);

// IPAM Allocate -> veth/addresses/routes -> datapath CreateEndpoint; rolls
// everything back on failure (except when the attachment already exists).
absl::StatusOr<CniResult> RunAdd(CommandContext& context);
// datapath DeleteEndpoint -> teardown -> IPAM Release; idempotent.
absl::Status RunDel(CommandContext& context);
// Compares prevResult with the network, the IPAM allocation and the
// datapath endpoint.
absl::Status RunCheck(CommandContext& context);
// Frees everything not in cni.dev/valid-attachments.
absl::Status RunGc(CommandContext& context);
// Readiness: both services healthy and addresses left.
absl::Status RunStatus(CommandContext& context);

}  // namespace ebpfcni::cni
