#pragma once
// Routed-mode pod networking through netlink (libnl-route-3); no shelling
// out to ip(8). One veth pair per pod: the host side stays in the host netns
// and carries the datapath's TC programs; the peer moves into the pod's netns
// under the requested name.
//
// Addressing (routed, no bridge):
//   pod:  <ip>/32 and <ip6>/128 on <ifname>; an on-link route to each
//         gateway; default routes via the gateways.
//   A pod may have several of these interfaces (two CNI_IFNAMEs of one
//   network, or two ebpf-cni networks). Per family, the first interface owns
//   the pod's default route. A later one ("secondary": the pod already has a
//   default route of that family) gets instead, each with a metric of its
//   own (kSecondaryRouteMetricBase + its ifindex) so it never collides with
//   another interface's routes:
//     - the on-link route to its gateway;
//     - a route to its pool via its gateway, unless the pod's default route
//       already goes to that pool's gateway (same network: the pool is
//       reached through the first interface, and a more specific route would
//       pull that interface's replies onto this one);
//     - source routing: "from <ip> lookup <table>" (priority
//       kSourceRulePriority, table kSourceTableBase + its ifindex) with the
//       on-link gateway route and a default route via this interface, so
//       traffic from its address (replies to connections it accepted, or a
//       socket bound to it) leaves through it, never through another
//       interface whose host side would not route that source back.
//   host: the gateway addresses (/32, /128 nodad) on the host veth so the
//         pod's ARP/NDP for its gateway is answered and pod->gateway works;
//         a /32 (/128) route per pod address to the host veth.
//   sysctls: net.ipv4.ip_forward=1 (and net.ipv6.conf.all.forwarding=1 when
//         the pod has an IPv6 address); per-interface settings as needed.
#include <optional>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "common/net/ip_address.h"

namespace ebpfcni::net {

// A main-table route inside the pod via a gateway of the interface.
struct PodRoute {
  IpPrefix destination;
  IpAddress gateway;
  bool operator==(const PodRoute&) const = default;
};

struct PodNetworkSpec {
  // CNI_NETNS, e.g. /var/run/netns/x or /proc/<pid>/ns/net.
  std::string netns_path;
  // CNI_IFNAME inside the pod, e.g. "eth0".
  std::string container_ifname;
  // Host-side veth name (<= 15 chars), see HostVethName().
  std::string host_ifname;
  int mtu = 1500;
  // Pod addresses (one per family at most), configured as /32 and /128.
  std::vector<IpAddress> addresses;
  // Gateway per family present in addresses.
  std::optional<IpAddress> gateway_v4;
  std::optional<IpAddress> gateway_v6;
  // The pool (subnet) each address came from, when known (IPAM's pool
  // prefix length). Setup routes a secondary interface's pool through it.
  std::vector<IpPrefix> pools;
  // CHECK: the routes the ADD result reported for this interface
  // (prevResult). Per family, a default route means the interface owns the
  // pod's default route; otherwise it is a secondary interface and these are
  // its pool routes. nullopt: a default route per family (what ADD of the
  // only interface reports).
  std::optional<std::vector<PodRoute>> routes;
};

// Routing of secondary interfaces (see the top of this file).
inline constexpr uint32_t kSecondaryRouteMetricBase = 10000;
inline constexpr uint32_t kSourceTableBase = 10000;
inline constexpr uint32_t kSourceRulePriority = 1000;

struct PodNetworkInfo {
  int host_ifindex = 0;
  std::string host_mac;       // "aa:bb:cc:dd:ee:ff"
  int container_ifindex = 0;
  std::string container_mac;
  // The main-table routes Setup installed via the gateways (default routes,
  // or a secondary interface's pool routes), for the ADD result.
  std::vector<PodRoute> routes;
};

// Deterministic host veth name for an attachment: prefix + hex of a hash of
// (container id, ifname), at most 15 characters. Same inputs, same name, so
// DEL finds the veth without state.
std::string HostVethName(const std::string& prefix, const std::string& container_id,
                         const std::string& container_ifname);

// Creates and configures everything above. Fails with ALREADY_EXISTS (and
// changes nothing) when container_ifname already exists in the netns, or when
// host_ifname exists. On any other failure removes what it created.
// NOT_FOUND / INVALID_ARGUMENT when netns_path is not a network namespace.
absl::StatusOr<PodNetworkInfo> SetupPodNetwork(const PodNetworkSpec& spec);

// Removes the veth pair (deleting the host side removes both), the host
// routes and the pod's source rules for the addresses. Idempotent: succeeds when any part is already gone; netns_path may
// be empty or no longer exist.
absl::Status TeardownPodNetwork(const PodNetworkSpec& spec);

// Verifies that the pod's interface, addresses and routes and the host veth
// and host routes match spec; FAILED_PRECONDITION naming the first
// difference otherwise.
absl::Status CheckPodNetwork(const PodNetworkSpec& spec);

// True when a link named ifname exists in the network namespace.
absl::StatusOr<bool> LinkExistsInNetns(const std::string& netns_path, const std::string& ifname);

// ifindex of a link in the host (current) namespace; NOT_FOUND when absent.
absl::StatusOr<int> HostLinkIndex(const std::string& ifname);

}  // namespace ebpfcni::net
