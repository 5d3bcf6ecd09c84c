#include "cni/plugin/commands/commands.h"

namespace ebpfcni::cni {

net::PodNetworkSpec PodSpecFor(CommandContext& context, const AttachmentAddresses& addresses) {
  const CniEnvironment& env = context.env;
  net::PodNetworkSpec spec;
  spec.netns_path = env.netns;
  spec.container_ifname = env.ifname;
  spec.host_ifname = context.network.HostVethName(context.config.host_veth_prefix, env.container_id, env.ifname);
  spec.mtu = context.config.mtu;
  spec.addresses = addresses.addresses;
  spec.gateway_v4 = addresses.gateway_v4;
  spec.gateway_v6 = addresses.gateway_v6;
  spec.pools = addresses.pools;
  return spec;
}

}  // namespace ebpfcni::cni
