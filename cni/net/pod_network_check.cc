// CheckPodNetwork (CNI CHECK) and small link queries: compare the spec with
// what the kernel reports and name the first difference.
#include <linux/if.h>
#include <netlink/route/link.h>

#include <algorithm>
#include <cstring>

#include <absl/strings/str_cat.h>

#include "cni/net/netlink.h"
#include "cni/net/netns.h"
#include "cni/net/pod_network.h"
#include "cni/net/pod_network_plan.h"

namespace ebpfcni::net {
namespace {

// where: "in /var/run/netns/x" or "on the host".
absl::Status CheckLinkState(rtnl_link* link, const std::string& name, const std::string& where,
                            int mtu) {
  const char* type = rtnl_link_get_type(link);
  if (type == nullptr || std::strcmp(type, "veth") != 0) {
    return absl::FailedPreconditionError(absl::StrCat("interface ", name, " ", where,
                                                      " is not a veth (type ",
                                                      type ? type : "none", ")"));
  }
  if ((rtnl_link_get_flags(link) & IFF_UP) == 0) {
    return absl::FailedPreconditionError(absl::StrCat("interface ", name, " ", where, " is down"));
  }
  if (static_cast<int>(rtnl_link_get_mtu(link)) != mtu) {
    return absl::FailedPreconditionError(absl::StrCat("interface ", name, " ", where, " has mtu ",
                                                      rtnl_link_get_mtu(link), ", expected ", mtu));
  }
  return absl::OkStatus();
}

absl::Status CheckAddress(nl_sock* sk, int ifindex, const IpAddress& address,
                          const std::string& name, const std::string& where) {
  absl::StatusOr<std::vector<AddressEntry>> addresses = ListAddresses(sk, ifindex);
  if (!addresses.ok()) return addresses.status();
  IpPrefix wanted(address, address.max_prefix_length());
  for (const AddressEntry& entry : *addresses) {
    if (entry.prefix == wanted) return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("address ", wanted.ToString(), " missing on ", name, " ", where));
}

bool HasRoute(const std::vector<RouteEntry>& routes, const IpPrefix& destination, int oif,
              const std::optional<IpAddress>& gateway) {
  for (const RouteEntry& route : routes) {
    if (route.destination == destination && route.oif == oif && route.gateway == gateway) {
      return true;
    }
  }
  return false;
}

// A secondary interface (no default route of its own): traffic from its
// address must be routed through it (pod_network.h).
absl::Status CheckSourceRouting(nl_sock* sk, const PodNetworkSpec& spec, const FamilyConfig& f, int ifindex,
                                const std::string& where) {
  const IpPrefix source(f.address, f.host_prefix_length());
  absl::StatusOr<std::optional<uint32_t>> table = FindSourceRuleTable(sk, source, kSourceRulePriority);
  if (!table.ok()) return table.status();
  if (!*table) {
    return absl::FailedPreconditionError(absl::StrCat("rule from ", source.ToString(), " (priority ",
                                                      kSourceRulePriority, ") missing ", where));
  }
  absl::StatusOr<std::vector<RouteEntry>> routes = ListRoutes(sk, f.address.family(), **table);
  if (!routes.ok()) return routes.status();
  IpPrefix any(IpAddress::FromNumber(f.gateway.family(), 0), 0);
  if (!HasRoute(*routes, any, ifindex, f.gateway)) {
    return absl::FailedPreconditionError(absl::StrCat("default route via ", f.gateway.ToString(), " dev ",
                                                      spec.container_ifname, " missing in table ", **table,
                                                      " (rule from ", source.ToString(), ") ", where));
  }
  return absl::OkStatus();
}

absl::Status CheckPodSide(nl_sock* sk, const PodNetworkSpec& spec, const PodNetworkPlan& plan,
                          int* container_ifindex) {
  const std::string where = absl::StrCat("in ", spec.netns_path);
  absl::StatusOr<LinkPtr> link = GetLinkByName(sk, spec.container_ifname);
  if (absl::IsNotFound(link.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("interface ", spec.container_ifname, " does not exist ", where));
  }
  if (!link.ok()) return link.status();
  if (absl::Status s = CheckLinkState(link->get(), spec.container_ifname, where, spec.mtu);
      !s.ok()) {
    return s;
  }
  int ifindex = rtnl_link_get_ifindex(link->get());
  *container_ifindex = ifindex;
  for (const FamilyConfig& f : plan.families) {
    if (absl::Status s = CheckAddress(sk, ifindex, f.address, spec.container_ifname, where);
        !s.ok()) {
      return s;
    }
    absl::StatusOr<std::vector<RouteEntry>> routes = ListMainRoutes(sk, f.address.family());
    if (!routes.ok()) return routes.status();
    IpPrefix to_gateway(f.gateway, f.gateway.max_prefix_length());
    if (!HasRoute(*routes, to_gateway, ifindex, std::nullopt)) {
      return absl::FailedPreconditionError(absl::StrCat("route ", to_gateway.ToString(), " dev ",
                                                        spec.container_ifname, " missing ", where));
    }
    IpPrefix any(IpAddress::FromNumber(f.gateway.family(), 0), 0);
    std::vector<PodRoute> expected;
    if (spec.routes) {
      for (const PodRoute& route : *spec.routes) {
        if (route.destination.family() == f.address.family()) expected.push_back(route);
      }
    } else {
      expected.push_back({any, f.gateway});
    }
    for (const PodRoute& route : expected) {
      if (!HasRoute(*routes, route.destination, ifindex, route.gateway)) {
        return absl::FailedPreconditionError(
            absl::StrCat(route.destination == any ? "default route" : absl::StrCat("route ", route.destination.ToString()),
                         " via ", route.gateway.ToString(), " dev ", spec.container_ifname, " missing ", where));
      }
    }
    const bool owns_default =
        std::any_of(expected.begin(), expected.end(), [&](const PodRoute& r) { return r.destination == any; });
    if (!owns_default) {
      if (absl::Status s = CheckSourceRouting(sk, spec, f, ifindex, where); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckHostSide(nl_sock* sk, const PodNetworkSpec& spec, const PodNetworkPlan& plan,
                           int host_ifindex) {
  const std::string where = "on the host";
  for (const FamilyConfig& f : plan.families) {
    if (absl::Status s = CheckAddress(sk, host_ifindex, f.gateway, spec.host_ifname, where);
        !s.ok()) {
      return s;
    }
    absl::StatusOr<std::vector<RouteEntry>> routes = ListMainRoutes(sk, f.address.family());
    if (!routes.ok()) return routes.status();
    IpPrefix to_pod(f.address, f.host_prefix_length());
    if (!HasRoute(*routes, to_pod, host_ifindex, std::nullopt)) {
      return absl::FailedPreconditionError(absl::StrCat("route ", to_pod.ToString(), " dev ",
                                                        spec.host_ifname, " missing ", where));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPodNetwork(const PodNetworkSpec& spec) {
  absl::StatusOr<PodNetworkPlan> plan = PlanPodNetwork(spec);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<UniqueFd> netns = OpenNetns(spec.netns_path);
  if (!netns.ok()) return netns.status();
  absl::StatusOr<NlSocketPtr> host_sk = ConnectRouteSocket();
  if (!host_sk.ok()) return host_sk.status();

  absl::StatusOr<LinkPtr> host_link = GetLinkByName(host_sk->get(), spec.host_ifname);
  if (absl::IsNotFound(host_link.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("host interface ", spec.host_ifname, " does not exist"));
  }
  if (!host_link.ok()) return host_link.status();
  if (absl::Status s = CheckLinkState(host_link->get(), spec.host_ifname, "on the host", spec.mtu);
      !s.ok()) {
    return s;
  }

  int container_ifindex = 0;
  absl::Status pod = InNetns(netns->get(), [&]() -> absl::Status {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    return CheckPodSide(sk->get(), spec, *plan, &container_ifindex);
  });
  if (!pod.ok()) return pod;

  // IFLA_LINK of a veth is its peer's ifindex (in the peer's namespace).
  if (rtnl_link_get_link(host_link->get()) != container_ifindex) {
    return absl::FailedPreconditionError(
        absl::StrCat("host interface ", spec.host_ifname, " is not the veth peer of ",
                     spec.container_ifname, " in ", spec.netns_path));
  }
  return CheckHostSide(host_sk->get(), spec, *plan, rtnl_link_get_ifindex(host_link->get()));
}

absl::StatusOr<bool> LinkExistsInNetns(const std::string& netns_path, const std::string& ifname) {
  absl::StatusOr<UniqueFd> netns = OpenNetns(netns_path);
  if (!netns.ok()) return netns.status();
  return InNetns(netns->get(), [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    return LinkExists(sk->get(), ifname);
  });
}

absl::StatusOr<int> HostLinkIndex(const std::string& ifname) {
  absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
  if (!sk.ok()) return sk.status();
  absl::StatusOr<LinkPtr> link = GetLinkByName(sk->get(), ifname);
  if (!link.ok()) return link.status();
  return rtnl_link_get_ifindex(link->get());
}

}  // namespace ebpfcni::net
