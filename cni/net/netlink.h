#pragma once
// Thin RAII layer over libnl-route-3: owning pointers for libnl objects,
// libnl error -> absl::Status mapping, and the handful of link/address/route
// queries pod networking needs. A socket talks to the network namespace that
// was current on the calling thread when it was connected.
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/socket.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <absl/strings/string_view.h>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "common/net/ip_address.h"

namespace ebpfcni::net {

struct NlSocketDeleter {
  void operator()(nl_sock* sk) const { nl_socket_free(sk); }
};
struct LinkDeleter {
  void operator()(rtnl_link* link) const { rtnl_link_put(link); }
};
struct AddrDeleter {
  void operator()(rtnl_addr* addr) const { rtnl_addr_put(addr); }
};
struct RouteDeleter {
  void operator()(rtnl_route* route) const { rtnl_route_put(route); }
};
struct NlAddrDeleter {
  void operator()(nl_addr* addr) const { nl_addr_put(addr); }
};
struct RuleDeleter {
  void operator()(rtnl_rule* rule) const { rtnl_rule_put(rule); }
};
struct CacheDeleter {
  void operator()(nl_cache* cache) const { nl_cache_free(cache); }
};
using NlSocketPtr = std::unique_ptr<nl_sock, NlSocketDeleter>;
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;
using AddrPtr = std::unique_ptr<rtnl_addr, AddrDeleter>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;
using RulePtr = std::unique_ptr<rtnl_rule, RuleDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;

// Maps a negative libnl error code to a status: NLE_EXIST -> ALREADY_EXISTS,
// NLE_OBJ_NOTFOUND/NLE_NODEV -> NOT_FOUND, NLE_PERM -> PERMISSION_DENIED,
// NLE_INVAL/NLE_RANGE -> INVALID_ARGUMENT, anything else -> INTERNAL.
absl::Status NlError(int nl_error, absl::string_view what);

// True for the "object is already gone" errors that idempotent deletes accept.
bool IsNlNotFound(int nl_error);

// NETLINK_ROUTE socket in the calling thread's current network namespace.
absl::StatusOr<NlSocketPtr> ConnectRouteSocket();

// nl_addr for address/prefix_length (AF_INET or AF_INET6).
NlAddrPtr ToNlAddr(const IpAddress& address, int prefix_length);
// The default-route destination (0.0.0.0/0 or ::/0) of a family.
NlAddrPtr DefaultDestination(IpFamily family);
// Reverse of ToNlAddr; nullopt for non-IP or empty addresses.
std::optional<IpAddress> FromNlAddr(const nl_addr* addr);

// Current kernel state of a link by name; NOT_FOUND when absent.
absl::StatusOr<LinkPtr> GetLinkByName(nl_sock* sk, const std::string& name);
absl::StatusOr<bool> LinkExists(nl_sock* sk, const std::string& name);

// Sets IFF_UP on a link.
absl::Status SetLinkUp(nl_sock* sk, rtnl_link* link);

// Polls until the link's operational state is UP or timeout passes; returns
// whether it became UP. The kernel finishes bringing a link up (carrier,
// operstate, attaching the real qdisc) asynchronously in its linkwatch
// worker; until then transmitted packets are dropped.
absl::StatusOr<bool> WaitForOperUp(nl_sock* sk, const std::string& name,
                                   std::chrono::milliseconds timeout);

// Deletes a link by name; OK when it does not exist.
absl::Status DeleteLinkIfExists(nl_sock* sk, const std::string& name);

// Adds address/prefix_length on ifindex with the given IFA_F_* flags.
absl::Status AddAddress(nl_sock* sk, int ifindex, const IpAddress& address, int prefix_length,
                        unsigned int flags);

struct AddressEntry {
  IpPrefix prefix;  // local address and prefix length
  unsigned int flags = 0;
};
// Addresses configured on ifindex.
absl::StatusOr<std::vector<AddressEntry>> ListAddresses(nl_sock* sk, int ifindex);

struct RouteEntry {
  IpPrefix destination;
  std::optional<IpAddress> gateway;
  int oif = 0;
  uint8_t scope = 0;
  uint32_t table = 0;
  uint32_t metric = 0;
};
// Routes of a family in one table (RT_TABLE_MAIN by default) with a single
// nexthop (multipath routes are reported with their first nexthop).
absl::StatusOr<std::vector<RouteEntry>> ListRoutes(nl_sock* sk, IpFamily family, uint32_t table);
absl::StatusOr<std::vector<RouteEntry>> ListMainRoutes(nl_sock* sk, IpFamily family);

struct RouteSpec {
  IpPrefix destination;
  int oif = 0;
  std::optional<IpAddress> gateway;
  // RT_SCOPE_LINK for directly connected destinations, RT_SCOPE_UNIVERSE for
  // routes via a gateway. IPv6 ignores scopes.
  uint8_t scope = 0;
  uint32_t table = RT_TABLE_MAIN;
  // Route priority ("metric"); 0 is the kernel's default (1024 for IPv6).
  // On delete, 0 matches any.
  uint32_t metric = 0;
};
// Adds (or replaces, when replace is true) a route.
absl::Status AddRoute(nl_sock* sk, const RouteSpec& spec, bool replace);
// Deletes a route matching destination, oif, table (and metric when set); OK
// when absent.
absl::Status DeleteRouteIfExists(nl_sock* sk, const RouteSpec& spec);

// Source routing: "from <source> lookup <table>" at a priority.
absl::Status AddSourceRule(nl_sock* sk, const IpPrefix& source, uint32_t table, uint32_t priority);
// Deletes every rule "from <source>" at that priority; OK when there is none.
absl::Status DeleteSourceRules(nl_sock* sk, const IpPrefix& source, uint32_t priority);
// The table of the rule "from <source>" at that priority; nullopt when there
// is no such rule.
absl::StatusOr<std::optional<uint32_t>> FindSourceRuleTable(nl_sock* sk, const IpPrefix& source,
                                                            uint32_t priority);

// "aa:bb:cc:dd:ee:ff" of a link, empty when it has none.
std::string LinkMac(rtnl_link* link);

}  // namespace ebpfcni::net
