#include "cni/net/pod_network_plan.h"

#include <absl/strings/str_cat.h>

#include "cni/net/interface_name.h"

namespace ebpfcni::net {
namespace {

// IPv4 minimum datagram size; the kernel refuses smaller MTUs.
constexpr int kMinMtu = 68;
// IPv6 requires 1280; below that the kernel silently disables IPv6 on the
// interface, which would make the pod's IPv6 address vanish.
constexpr int kMinMtuIpv6 = 1280;
constexpr int kMaxMtu = 65535;

const char* FamilyName(IpFamily family) { return family == IpFamily::kIpv4 ? "IPv4" : "IPv6"; }

}  // namespace

bool PodNetworkPlan::has_ipv6() const {
  for (const FamilyConfig& f : families) {
    if (!f.address.is_v4()) return true;
  }
  return false;
}

// Full validation for Setup and Check: everything the kernel would reject
// with a bare EINVAL, plus contract rules (one address per family, a gateway
// of the same family for each address).
absl::StatusOr<PodNetworkPlan> PlanPodNetwork(const PodNetworkSpec& spec) {
  if (spec.netns_path.empty()) return absl::InvalidArgumentError("netns_path is empty");
  if (absl::Status s = ValidateInterfaceName(spec.container_ifname, "container_ifname"); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateInterfaceName(spec.host_ifname, "host_ifname"); !s.ok()) return s;
  PodNetworkPlan result;
  bool seen_v4 = false;
  bool seen_v6 = false;
  for (const IpAddress& address : spec.addresses) {
    bool& seen = address.is_v4() ? seen_v4 : seen_v6;
    if (seen) {
      return absl::InvalidArgumentError(absl::StrCat(
          "more than one ", FamilyName(address.family()), " address given; at most one per family"));
    }
    seen = true;
    const std::optional<IpAddress>& gateway = address.is_v4() ? spec.gateway_v4 : spec.gateway_v6;
    if (!gateway) {
      return absl::InvalidArgumentError(absl::StrCat("address ", address.ToString(), " has no ",
                                                     FamilyName(address.family()), " gateway"));
    }
    if (gateway->family() != address.family()) {
      return absl::InvalidArgumentError(absl::StrCat("gateway ", gateway->ToString(),
                                                     " is not an ", FamilyName(address.family()),
                                                     " address"));
    }
    if (*gateway == address) {
      return absl::InvalidArgumentError(
          absl::StrCat("gateway ", gateway->ToString(), " equals the pod address"));
    }
    std::optional<IpPrefix> pool;
    for (const IpPrefix& candidate : spec.pools) {
      if (candidate.family() == address.family() && candidate.Contains(address)) pool = candidate;
    }
    result.families.push_back({address, *gateway, pool});
  }
  if (spec.gateway_v4 && !seen_v4) {
    return absl::InvalidArgumentError("gateway_v4 is set but there is no IPv4 address");
  }
  if (spec.gateway_v6 && !seen_v6) {
    return absl::InvalidArgumentError("gateway_v6 is set but there is no IPv6 address");
  }
  int min_mtu = seen_v6 ? kMinMtuIpv6 : kMinMtu;
  if (spec.mtu < min_mtu || spec.mtu > kMaxMtu) {
    return absl::InvalidArgumentError(absl::StrCat("mtu ", spec.mtu, " is outside [", min_mtu, ", ",
                                                   kMaxMtu, "]"));
  }
  return result;
}

}  // namespace ebpfcni::net
