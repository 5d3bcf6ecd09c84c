#pragma once
// A PodNetworkSpec checked against the rules of the routed attachment and
// grouped per address family; shared by setup and check so both agree on
// what "configured" means.
#include <optional>
#include <vector>

#include <absl/status/statusor.h>

#include "cni/net/pod_network.h"
#include "common/net/ip_address.h"

namespace ebpfcni::net {

// One address family of the pod's configuration.
struct FamilyConfig {
  IpAddress address;
  IpAddress gateway;
  // The address's pool when the spec names one (PodNetworkSpec::pools).
  std::optional<IpPrefix> pool;
  // Pod addresses are host addresses: /32 or /128.
  int host_prefix_length() const { return address.max_prefix_length(); }
};

struct PodNetworkPlan {
  std::vector<FamilyConfig> families;  // at most one per family
  bool has_ipv6() const;
};

// INVALID_ARGUMENT for anything the kernel would reject with a bare EINVAL
// (names, MTU) and for contract violations: more than one address per
// family, an address without a gateway of its family, a gateway without an
// address, a gateway equal to the address.
absl::StatusOr<PodNetworkPlan> PlanPodNetwork(const PodNetworkSpec& spec);

}  // namespace ebpfcni::net
