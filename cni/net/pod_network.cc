// Setup / teardown / check of a pod's routed veth attachment. Host-side
// netlink work uses a socket connected in the caller's namespace; pod-side
// work runs inside InNetns() with a socket connected there.
#include "cni/net/pod_network.h"

#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netlink/route/link/veth.h>

#include <cstring>
#include <utility>

#include <absl/cleanup/cleanup.h>
#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "cni/net/interface_name.h"
#include "cni/net/ipv6_readiness.h"
#include "cni/net/mac_address.h"
#include "cni/net/netlink.h"
#include "cni/net/netns.h"
#include "cni/net/pod_network_plan.h"
#include "cni/net/sysctl.h"

namespace ebpfcni::net {
namespace {

std::string SysctlIfaceKey(IpFamily family, const std::string& ifname, const std::string& leaf) {
  return absl::StrCat("net/", family == IpFamily::kIpv4 ? "ipv4" : "ipv6", "/conf/", ifname, "/",
                      leaf);
}

// IPv6 settings of one veth end, applied before the link goes up:
// - disable_ipv6=0: the kernel gives IPv6 addresses only to interfaces with
//   IPv6 enabled; a namespace (or host) with default.disable_ipv6=1 would
//   otherwise drop our addresses.
// - accept_dad=0: a veth is point-to-point, so duplicate address detection
//   cannot find anything, but it keeps the link-local address tentative for
//   about a second, during which neighbour discovery on the link stalls and
//   the pod's first IPv6 connections wait for retransmits.
absl::Status PrepareIpv6On(const std::string& ifname) {
  for (const auto& [leaf, value] : {std::pair{"disable_ipv6", "0"}, std::pair{"accept_dad", "0"}}) {
    absl::Status s = EnsureSysctl(SysctlIfaceKey(IpFamily::kIpv6, ifname, leaf), value);
    if (absl::IsNotFound(s)) {
      return absl::FailedPreconditionError(
          absl::StrCat("IPv6 is not available for ", ifname, " (", s.message(), ")"));
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// ALREADY_EXISTS is reserved for "the attachment's interfaces are already
// there and nothing was changed"; other EEXISTs during configuration (e.g. a
// default route the runtime already installed) are a precondition failure.
absl::Status NotAlreadyExists(absl::Status status) {
  if (absl::IsAlreadyExists(status)) return absl::FailedPreconditionError(status.message());
  return status;
}

absl::Status CreateVethPair(nl_sock* host_sk, const PodNetworkSpec& spec, int netns_fd) {
  LinkPtr host(rtnl_link_veth_alloc());
  if (!host) return absl::ResourceExhaustedError("cannot allocate a veth link object");
  LinkPtr peer(rtnl_link_veth_get_peer(host.get()));  // own reference
  // The pair is freed through the host object; release breaks the cycle.
  absl::Cleanup release = [&] { rtnl_link_veth_release(host.release()); };

  rtnl_link_set_name(host.get(), spec.host_ifname.c_str());
  rtnl_link_set_mtu(host.get(), static_cast<unsigned int>(spec.mtu));
  MacAddress host_mac = HostMacFor(spec.host_ifname);
  NlAddrPtr host_lladdr(nl_addr_build(AF_LLC, host_mac.data(), host_mac.size()));
  if (host_lladdr) rtnl_link_set_addr(host.get(), host_lladdr.get());

  // Creating the peer directly inside the pod namespace under its final
  // name is atomic: no temporary name in the host namespace that could
  // collide, and if the name is taken the whole pair is not created.
  rtnl_link_set_name(peer.get(), spec.container_ifname.c_str());
  rtnl_link_set_mtu(peer.get(), static_cast<unsigned int>(spec.mtu));
  rtnl_link_set_ns_fd(peer.get(), netns_fd);
  NlAddrPtr peer_lladdr;
  if (std::optional<MacAddress> mac = ContainerMacFor(spec.addresses)) {
    peer_lladdr.reset(nl_addr_build(AF_LLC, mac->data(), mac->size()));
    if (peer_lladdr) rtnl_link_set_addr(peer.get(), peer_lladdr.get());
  }
  peer.reset();

  if (int err = rtnl_link_add(host_sk, host.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
    return NlError(err, absl::StrCat("cannot create veth pair ", spec.host_ifname, " <-> ",
                                     spec.container_ifname, " in ", spec.netns_path));
  }
  return absl::OkStatus();
}

IpPrefix DefaultPrefix(IpFamily family) { return IpPrefix(IpAddress::FromNumber(family, 0), 0); }

// The gateway of the pod's default route of a family, if it has one (any
// interface). nullopt: none, so this interface will own it.
absl::StatusOr<std::optional<IpAddress>> DefaultRouteGateway(nl_sock* sk, IpFamily family) {
  absl::StatusOr<std::vector<RouteEntry>> routes = ListMainRoutes(sk, family);
  if (!routes.ok()) return routes.status();
  for (const RouteEntry& route : *routes) {
    if (route.destination == DefaultPrefix(family)) {
      // A default route without a gateway (a device route) still is one.
      return std::optional<IpAddress>(route.gateway.value_or(IpAddress::FromNumber(family, 0)));
    }
  }
  return std::optional<IpAddress>();
}

// The pod has only a host address, so the gateway needs an explicit on-link
// route before it can be used as a next hop.
RouteSpec OnLinkGatewayRoute(int ifindex, const FamilyConfig& f) {
  return RouteSpec{IpPrefix(f.gateway, f.gateway.max_prefix_length()), ifindex, std::nullopt, RT_SCOPE_LINK};
}

// Routes of a secondary interface (see pod_network.h): metric'd main-table
// routes to the gateway and the pool, and source routing for its address.
absl::StatusOr<std::vector<PodRoute>> RouteSecondary(nl_sock* sk, int ifindex, const FamilyConfig& f,
                                                     const IpAddress& default_gateway) {
  const uint32_t metric = kSecondaryRouteMetricBase + static_cast<uint32_t>(ifindex);
  const uint32_t table = kSourceTableBase + static_cast<uint32_t>(ifindex);
  std::vector<PodRoute> installed;
  RouteSpec to_gateway = OnLinkGatewayRoute(ifindex, f);
  to_gateway.metric = metric;
  if (absl::Status s = AddRoute(sk, to_gateway, /*replace=*/false); !s.ok()) return s;
  if (f.pool && !f.pool->Contains(default_gateway)) {
    RouteSpec to_pool{IpPrefix(f.pool->Network(), f.pool->length()), ifindex, f.gateway, RT_SCOPE_UNIVERSE,
                      RT_TABLE_MAIN, metric};
    if (absl::Status s = AddRoute(sk, to_pool, /*replace=*/false); !s.ok()) return s;
    installed.push_back({to_pool.destination, f.gateway});
  }
  RouteSpec table_gateway = OnLinkGatewayRoute(ifindex, f);
  table_gateway.table = table;
  if (absl::Status s = AddRoute(sk, table_gateway, /*replace=*/false); !s.ok()) return s;
  RouteSpec table_default{DefaultPrefix(f.gateway.family()), ifindex, f.gateway, RT_SCOPE_UNIVERSE, table};
  if (absl::Status s = AddRoute(sk, table_default, /*replace=*/false); !s.ok()) return s;
  // A rule left by an interface that had this address before (its DEL did
  // not reach the namespace) would point at a dead table: replace it.
  const IpPrefix source(f.address, f.host_prefix_length());
  if (absl::Status s = DeleteSourceRules(sk, source, kSourceRulePriority); !s.ok()) return s;
  if (absl::Status s = AddSourceRule(sk, source, table, kSourceRulePriority); !s.ok()) return s;
  return installed;
}

// One family's routes inside the pod: the default route when the pod has
// none yet, the secondary layout otherwise. Returns the main-table routes
// via the gateway, for the ADD result.
absl::StatusOr<std::vector<PodRoute>> RouteFamily(nl_sock* sk, int ifindex, const FamilyConfig& f) {
  absl::StatusOr<std::optional<IpAddress>> existing = DefaultRouteGateway(sk, f.gateway.family());
  if (!existing.ok()) return existing.status();
  if (*existing) return RouteSecondary(sk, ifindex, f, **existing);

  RouteSpec to_gateway = OnLinkGatewayRoute(ifindex, f);
  if (absl::Status s = AddRoute(sk, to_gateway, /*replace=*/false); !s.ok()) return s;
  RouteSpec by_default{DefaultPrefix(f.gateway.family()), ifindex, f.gateway, RT_SCOPE_UNIVERSE};
  absl::Status added = AddRoute(sk, by_default, /*replace=*/false);
  if (absl::IsAlreadyExists(added)) {
    // Another interface's ADD installed a default route since we looked:
    // it is the first one, this interface is secondary after all.
    if (absl::Status s = DeleteRouteIfExists(sk, to_gateway); !s.ok()) return s;
    existing = DefaultRouteGateway(sk, f.gateway.family());
    if (!existing.ok()) return existing.status();
    if (*existing) return RouteSecondary(sk, ifindex, f, **existing);
  }
  if (!added.ok()) return added;
  return std::vector<PodRoute>{{by_default.destination, f.gateway}};
}

absl::Status ConfigurePodSide(int netns_fd, const PodNetworkSpec& spec, const PodNetworkPlan& plan,
                              PodNetworkInfo* info) {
  return InNetns(netns_fd, [&]() -> absl::Status {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    if (plan.has_ipv6()) {
      if (absl::Status s = PrepareIpv6On(spec.container_ifname); !s.ok()) return s;
    }
    absl::StatusOr<LinkPtr> link = GetLinkByName(sk->get(), spec.container_ifname);
    if (!link.ok()) return link.status();
    int ifindex = rtnl_link_get_ifindex(link->get());
    if (absl::Status s = SetLinkUp(sk->get(), link->get()); !s.ok()) return s;
    for (const FamilyConfig& f : plan.families) {
      // NODAD: the address is ours by IPAM; DAD would only delay traffic by
      // a second and cannot find a conflict on a point-to-point veth.
      unsigned int flags = f.address.is_v4() ? 0 : IFA_F_NODAD;
      if (absl::Status s = AddAddress(sk->get(), ifindex, f.address, f.host_prefix_length(), flags);
          !s.ok()) {
        return s;
      }
    }
    for (const FamilyConfig& f : plan.families) {
      absl::StatusOr<std::vector<PodRoute>> routes = RouteFamily(sk->get(), ifindex, f);
      if (!routes.ok()) return routes.status();
      info->routes.insert(info->routes.end(), routes->begin(), routes->end());
    }
    absl::StatusOr<LinkPtr> final_link = GetLinkByName(sk->get(), spec.container_ifname);
    if (!final_link.ok()) return final_link.status();
    info->container_ifindex = ifindex;
    info->container_mac = LinkMac(final_link->get());
    return absl::OkStatus();
  });
}

absl::Status ConfigureHostSide(nl_sock* sk, const PodNetworkSpec& spec, const PodNetworkPlan& plan,
                               PodNetworkInfo* info) {
  if (plan.has_ipv6()) {
    if (absl::Status s = PrepareIpv6On(spec.host_ifname); !s.ok()) return s;
  }
  absl::StatusOr<LinkPtr> link = GetLinkByName(sk, spec.host_ifname);
  if (!link.ok()) return link.status();
  int ifindex = rtnl_link_get_ifindex(link->get());
  // Forwarding is decided per ingress interface; set it on the veth as well
  // as globally in case the host's conf/default disables it.
  // rp_filter needs nothing: every pod source address has its /32 (/128)
  // route back through the veth it arrives on, so even strict mode passes.
  for (const FamilyConfig& f : plan.families) {
    if (absl::Status s = EnsureSysctl(SysctlIfaceKey(f.address.family(), spec.host_ifname,
                                                     "forwarding"),
                                      "1");
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = SetLinkUp(sk, link->get()); !s.ok()) return s;
  for (const FamilyConfig& f : plan.families) {
    // The gateway address on the host veth makes the host answer the pod's
    // ARP/NDP for its gateway and lets the pod reach the host through it.
    // The same address sits on every pod's veth; the kernel allows that.
    unsigned int flags = f.gateway.is_v4() ? 0 : IFA_F_NODAD;
    if (absl::Status s =
            AddAddress(sk, ifindex, f.gateway, f.gateway.max_prefix_length(), flags);
        !s.ok()) {
      return s;
    }
  }
  for (const FamilyConfig& f : plan.families) {
    // Replace: IPAM handed this address to this pod, so a leftover route of
    // a previous owner (leaked veth) must not block it.
    RouteSpec to_pod{IpPrefix(f.address, f.host_prefix_length()), ifindex, std::nullopt,
                     RT_SCOPE_LINK};
    if (absl::Status s = AddRoute(sk, to_pod, /*replace=*/true); !s.ok()) return s;
  }
  absl::StatusOr<LinkPtr> final_link = GetLinkByName(sk, spec.host_ifname);
  if (!final_link.ok()) return final_link.status();
  info->host_ifindex = ifindex;
  info->host_mac = LinkMac(final_link->get());
  return absl::OkStatus();
}

// Waits (bounded) until the kernel has finished activating both ends: the
// operational state is UP and, for IPv6, each end answers neighbour
// solicitations for its addresses (see ipv6_readiness.h). Not being ready in
// time is logged, not fatal: the link becomes usable moments later and
// failing the pod for that would be worse.
absl::StatusOr<bool> LinkReady(nl_sock* sk, const std::string& ifname,
                               const std::vector<IpAddress>& addresses,
                               std::chrono::milliseconds timeout) {
  absl::StatusOr<bool> up = WaitForOperUp(sk, ifname, timeout);
  if (!up.ok() || !*up) return up;
  return WaitForSolicitedNodeGroups(ifname, addresses, timeout);
}

void WaitUntilReady(nl_sock* host_sk, int netns_fd, const PodNetworkSpec& spec,
                    const PodNetworkPlan& plan) {
  constexpr std::chrono::milliseconds kTimeout(2000);
  std::vector<IpAddress> gateways;
  for (const FamilyConfig& f : plan.families) gateways.push_back(f.gateway);
  absl::StatusOr<bool> host_ready = LinkReady(host_sk, spec.host_ifname, gateways, kTimeout);
  absl::StatusOr<bool> pod_ready = InNetns(netns_fd, [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    return LinkReady(sk->get(), spec.container_ifname, spec.addresses, kTimeout);
  });
  if (!host_ready.ok() || !*host_ready || !pod_ready.ok() || !*pod_ready) {
    spdlog::warn("veth {} <-> {} in {} not ready after {} ms", spec.host_ifname,
                 spec.container_ifname, spec.netns_path, kTimeout.count());
  }
}

absl::Status EnableGlobalForwarding(const PodNetworkPlan& plan) {
  if (absl::Status s = EnsureSysctl("net/ipv4/ip_forward", "1"); !s.ok()) return s;
  if (plan.has_ipv6()) {
    absl::Status s = EnsureSysctl("net/ipv6/conf/all/forwarding", "1");
    if (absl::IsNotFound(s)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the pod has an IPv6 address but IPv6 is not available on the host (",
                       s.message(), ")"));
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PodNetworkInfo> SetupPodNetwork(const PodNetworkSpec& spec) {
  absl::StatusOr<PodNetworkPlan> plan = PlanPodNetwork(spec);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<UniqueFd> netns = OpenNetns(spec.netns_path);
  if (!netns.ok()) return netns.status();
  absl::StatusOr<NlSocketPtr> host_sk = ConnectRouteSocket();
  if (!host_sk.ok()) return host_sk.status();

  absl::StatusOr<bool> host_exists = LinkExists(host_sk->get(), spec.host_ifname);
  if (!host_exists.ok()) return host_exists.status();
  if (*host_exists) {
    return absl::AlreadyExistsError(absl::StrCat(
        "host interface ", spec.host_ifname,
        " already exists (an attachment with the same container id and ifname is set up)"));
  }
  absl::StatusOr<bool> pod_exists = InNetns(netns->get(), [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    return LinkExists(sk->get(), spec.container_ifname);
  });
  if (!pod_exists.ok()) return pod_exists.status();
  if (*pod_exists) {
    return absl::AlreadyExistsError(absl::StrCat("interface ", spec.container_ifname,
                                                 " already exists in ", spec.netns_path));
  }

  // Global settings first: if the host refuses them, fail before creating
  // anything (they are idempotent and shared by all pods, so never rolled
  // back).
  if (absl::Status s = EnableGlobalForwarding(*plan); !s.ok()) return s;

  if (absl::Status s = CreateVethPair(host_sk->get(), spec, netns->get()); !s.ok()) {
    // EEXIST here means a concurrent ADD won the race; nothing was created.
    return s;
  }
  absl::Cleanup rollback = [&] {
    // Deleting the host side removes the peer, its addresses and routes,
    // and the host routes through it.
    if (absl::Status s = DeleteLinkIfExists(host_sk->get(), spec.host_ifname); !s.ok()) {
      spdlog::error("rollback of {} failed: {}", spec.host_ifname, s.ToString());
    }
  };

  PodNetworkInfo info;
  if (absl::Status s = ConfigurePodSide(netns->get(), spec, *plan, &info); !s.ok()) {
    return NotAlreadyExists(s);
  }
  if (absl::Status s = ConfigureHostSide(host_sk->get(), spec, *plan, &info); !s.ok()) {
    return NotAlreadyExists(s);
  }
  WaitUntilReady(host_sk->get(), netns->get(), spec, *plan);
  std::move(rollback).Cancel();
  spdlog::info("pod network set up: {} (ifindex {}) <-> {} (ifindex {}) in {}", spec.host_ifname,
               info.host_ifindex, spec.container_ifname, info.container_ifindex, spec.netns_path);
  return info;
}

absl::Status TeardownPodNetwork(const PodNetworkSpec& spec) {
  if (absl::Status s = ValidateInterfaceName(spec.host_ifname, "host_ifname"); !s.ok()) return s;
  absl::StatusOr<NlSocketPtr> host_sk = ConnectRouteSocket();
  if (!host_sk.ok()) return host_sk.status();

  absl::StatusOr<LinkPtr> host_link = GetLinkByName(host_sk->get(), spec.host_ifname);
  if (host_link.ok()) {
    int ifindex = rtnl_link_get_ifindex(host_link->get());
    // Only routes through this veth: a route for the same address through
    // another veth belongs to a newer attachment.
    for (const IpAddress& address : spec.addresses) {
      RouteSpec to_pod{IpPrefix(address, address.max_prefix_length()), ifindex, std::nullopt,
                       RT_SCOPE_LINK};
      if (absl::Status s = DeleteRouteIfExists(host_sk->get(), to_pod); !s.ok()) return s;
    }
    if (absl::Status s = DeleteLinkIfExists(host_sk->get(), spec.host_ifname); !s.ok()) return s;
  } else if (!absl::IsNotFound(host_link.status())) {
    return host_link.status();
  }

  if (spec.netns_path.empty() || spec.container_ifname.empty()) return absl::OkStatus();
  absl::StatusOr<UniqueFd> netns = OpenNetns(spec.netns_path);
  if (absl::IsNotFound(netns.status()) || absl::IsInvalidArgument(netns.status())) {
    // The pod's namespace is gone (or only a stale mount point is left), and
    // with it everything we configured inside.
    return absl::OkStatus();
  }
  if (!netns.ok()) return netns.status();
  if (absl::Status s = ValidateInterfaceName(spec.container_ifname, "container_ifname"); !s.ok()) {
    return s;
  }
  return InNetns(netns->get(), [&]() -> absl::Status {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    if (absl::Status s = DeleteLinkIfExists(sk->get(), spec.container_ifname); !s.ok()) return s;
    // A secondary interface's source rules outlive its link (its table's
    // routes went with it). Only rules for this attachment's own addresses.
    for (const IpAddress& address : spec.addresses) {
      if (absl::Status s = DeleteSourceRules(sk->get(), IpPrefix(address, address.max_prefix_length()),
                                             kSourceRulePriority);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace ebpfcni::net
