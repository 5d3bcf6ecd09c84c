#include "cni/net/netlink.h"

#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <sys/socket.h>

#include <thread>

#include <absl/strings/str_cat.h>

namespace ebpfcni::net {
namespace {

int AfOf(IpFamily family) { return family == IpFamily::kIpv4 ? AF_INET : AF_INET6; }

}  // namespace

absl::Status NlError(int nl_error, absl::string_view what) {
  std::string text = absl::StrCat(what, ": ", nl_geterror(nl_error));
  switch (nl_error < 0 ? -nl_error : nl_error) {
    case NLE_EXIST:
      return absl::AlreadyExistsError(text);
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
    case NLE_NOADDR:
      return absl::NotFoundError(text);
    case NLE_PERM:
      return absl::PermissionDeniedError(text);
    case NLE_INVAL:
    case NLE_RANGE:
      return absl::InvalidArgumentError(text);
    default:
      return absl::InternalError(text);
  }
}

bool IsNlNotFound(int nl_error) {
  int code = nl_error < 0 ? -nl_error : nl_error;
  return code == NLE_OBJ_NOTFOUND || code == NLE_NODEV || code == NLE_NOADDR;
}

absl::StatusOr<NlSocketPtr> ConnectRouteSocket() {
  NlSocketPtr sk(nl_socket_alloc());
  if (!sk) return absl::ResourceExhaustedError("cannot allocate a netlink socket");
  if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0) {
    return NlError(err, "cannot connect a NETLINK_ROUTE socket");
  }
  return sk;
}

NlAddrPtr ToNlAddr(const IpAddress& address, int prefix_length) {
  NlAddrPtr addr(nl_addr_build(AfOf(address.family()), address.data(), address.size()));
  if (addr) nl_addr_set_prefixlen(addr.get(), prefix_length);
  return addr;
}

NlAddrPtr DefaultDestination(IpFamily family) {
  IpAddress zero = IpAddress::FromNumber(family, 0);
  return ToNlAddr(zero, 0);
}

std::optional<IpAddress> FromNlAddr(const nl_addr* addr) {
  if (addr == nullptr) return std::nullopt;
  // libnl's getters take non-const pointers but do not modify.
  auto* mutable_addr = const_cast<nl_addr*>(addr);
  const auto* bytes = static_cast<const uint8_t*>(nl_addr_get_binary_addr(mutable_addr));
  unsigned int len = nl_addr_get_len(mutable_addr);
  switch (nl_addr_get_family(mutable_addr)) {
    case AF_INET:
      if (len == 0) return IpAddress::FromNumber(IpFamily::kIpv4, 0);
      if (len != 4) return std::nullopt;
      return IpAddress::FromV4Bytes(bytes);
    case AF_INET6:
      if (len == 0) return IpAddress::FromNumber(IpFamily::kIpv6, 0);
      if (len != 16) return std::nullopt;
      return IpAddress::FromV6Bytes(bytes);
    default:
      return std::nullopt;
  }
}

absl::StatusOr<LinkPtr> GetLinkByName(nl_sock* sk, const std::string& name) {
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &raw); err < 0) {
    return NlError(err, absl::StrCat("interface ", name));
  }
  return LinkPtr(raw);
}

absl::StatusOr<bool> LinkExists(nl_sock* sk, const std::string& name) {
  absl::StatusOr<LinkPtr> link = GetLinkByName(sk, name);
  if (link.ok()) return true;
  if (absl::IsNotFound(link.status())) return false;
  return link.status();
}

absl::Status SetLinkUp(nl_sock* sk, rtnl_link* link) {
  LinkPtr changes(rtnl_link_alloc());
  if (!changes) return absl::ResourceExhaustedError("cannot allocate a link object");
  rtnl_link_set_flags(changes.get(), IFF_UP);
  if (int err = rtnl_link_change(sk, link, changes.get(), 0); err < 0) {
    return NlError(err, absl::StrCat("cannot bring up ", rtnl_link_get_name(link)));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> WaitForOperUp(nl_sock* sk, const std::string& name,
                                   std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    absl::StatusOr<LinkPtr> link = GetLinkByName(sk, name);
    if (!link.ok()) return link.status();
    if (rtnl_link_get_operstate(link->get()) == IF_OPER_UP) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::Status DeleteLinkIfExists(nl_sock* sk, const std::string& name) {
  LinkPtr link(rtnl_link_alloc());
  if (!link) return absl::ResourceExhaustedError("cannot allocate a link object");
  rtnl_link_set_name(link.get(), name.c_str());
  int err = rtnl_link_delete(sk, link.get());
  if (err < 0 && !IsNlNotFound(err)) {
    return NlError(err, absl::StrCat("cannot delete interface ", name));
  }
  return absl::OkStatus();
}

absl::Status AddAddress(nl_sock* sk, int ifindex, const IpAddress& address, int prefix_length,
                        unsigned int flags) {
  AddrPtr addr(rtnl_addr_alloc());
  NlAddrPtr local = ToNlAddr(address, prefix_length);
  if (!addr || !local) return absl::ResourceExhaustedError("cannot allocate an address object");
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), AfOf(address.family()));
  if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0) {
    return NlError(err, "cannot build address");
  }
  rtnl_addr_set_prefixlen(addr.get(), prefix_length);
  rtnl_addr_set_flags(addr.get(), flags);
  if (int err = rtnl_addr_add(sk, addr.get(), NLM_F_EXCL); err < 0) {
    return NlError(err, absl::StrCat("cannot add address ", address.ToString(), "/",
                                     prefix_length, " to ifindex ", ifindex));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AddressEntry>> ListAddresses(nl_sock* sk, int ifindex) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(sk, &raw); err < 0) {
    return NlError(err, "cannot dump addresses");
  }
  CachePtr cache(raw);
  std::vector<AddressEntry> result;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
       obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_ifindex(addr) != ifindex) continue;
    std::optional<IpAddress> local = FromNlAddr(rtnl_addr_get_local(addr));
    if (!local) continue;
    result.push_back({IpPrefix(*local, rtnl_addr_get_prefixlen(addr)),
                      rtnl_addr_get_flags(addr)});
  }
  return result;
}

absl::StatusOr<std::vector<RouteEntry>> ListMainRoutes(nl_sock* sk, IpFamily family) {
  return ListRoutes(sk, family, RT_TABLE_MAIN);
}

absl::StatusOr<std::vector<RouteEntry>> ListRoutes(nl_sock* sk, IpFamily family, uint32_t table) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_route_alloc_cache(sk, AfOf(family), 0, &raw); err < 0) {
    return NlError(err, "cannot dump routes");
  }
  CachePtr cache(raw);
  std::vector<RouteEntry> result;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
       obj = nl_cache_get_next(obj)) {
    auto* route = reinterpret_cast<rtnl_route*>(obj);
    if (rtnl_route_get_table(route) != table) continue;
    if (rtnl_route_get_type(route) != RTN_UNICAST) continue;
    nl_addr* dst = rtnl_route_get_dst(route);
    std::optional<IpAddress> dst_address = FromNlAddr(dst);
    if (!dst_address) {
      // A route without RTA_DST is a default route.
      dst_address = IpAddress::FromNumber(family, 0);
    }
    RouteEntry entry;
    entry.destination = IpPrefix(*dst_address, dst ? nl_addr_get_prefixlen(dst) : 0);
    entry.scope = rtnl_route_get_scope(route);
    entry.table = rtnl_route_get_table(route);
    entry.metric = rtnl_route_get_priority(route);
    if (rtnl_route_get_nnexthops(route) > 0) {
      rtnl_nexthop* nh = rtnl_route_nexthop_n(route, 0);
      entry.oif = rtnl_route_nh_get_ifindex(nh);
      entry.gateway = FromNlAddr(rtnl_route_nh_get_gateway(nh));
    }
    result.push_back(entry);
  }
  return result;
}

namespace {

absl::StatusOr<RoutePtr> BuildRoute(const RouteSpec& spec) {
  RoutePtr route(rtnl_route_alloc());
  NlAddrPtr dst = ToNlAddr(spec.destination.address(), spec.destination.length());
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!route || !dst || !nh) {
    if (nh) rtnl_route_nh_free(nh);
    return absl::ResourceExhaustedError("cannot allocate a route object");
  }
  rtnl_route_set_family(route.get(), AfOf(spec.destination.family()));
  rtnl_route_set_table(route.get(), spec.table);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  if (spec.metric != 0) rtnl_route_set_priority(route.get(), spec.metric);
  if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0) {
    rtnl_route_nh_free(nh);
    return NlError(err, "cannot build route destination");
  }
  rtnl_route_nh_set_ifindex(nh, spec.oif);
  if (spec.gateway) {
    NlAddrPtr gateway = ToNlAddr(*spec.gateway, spec.gateway->max_prefix_length());
    rtnl_route_nh_set_gateway(nh, gateway.get());  // takes its own reference
  }
  rtnl_route_add_nexthop(route.get(), nh);  // the route owns nh from here
  return route;
}

std::string Describe(const RouteSpec& spec) {
  std::string text = spec.destination.ToString();
  if (spec.gateway) absl::StrAppend(&text, " via ", spec.gateway->ToString());
  absl::StrAppend(&text, " (oif ", spec.oif);
  if (spec.table != RT_TABLE_MAIN) absl::StrAppend(&text, ", table ", spec.table);
  if (spec.metric != 0) absl::StrAppend(&text, ", metric ", spec.metric);
  absl::StrAppend(&text, ")");
  return text;
}

absl::StatusOr<RulePtr> BuildSourceRule(const IpPrefix& source, uint32_t priority) {
  RulePtr rule(rtnl_rule_alloc());
  NlAddrPtr src = ToNlAddr(source.address(), source.length());
  if (!rule || !src) return absl::ResourceExhaustedError("cannot allocate a rule object");
  rtnl_rule_set_family(rule.get(), AfOf(source.family()));
  rtnl_rule_set_prio(rule.get(), priority);
  if (int err = rtnl_rule_set_src(rule.get(), src.get()); err < 0) {
    return NlError(err, "cannot build rule source");
  }
  return rule;
}

}  // namespace

absl::Status AddRoute(nl_sock* sk, const RouteSpec& spec, bool replace) {
  absl::StatusOr<RoutePtr> route = BuildRoute(spec);
  if (!route.ok()) return route.status();
  rtnl_route_set_scope(route->get(), spec.destination.family() == IpFamily::kIpv4
                                         ? spec.scope
                                         : static_cast<uint8_t>(RT_SCOPE_UNIVERSE));
  int flags = replace ? NLM_F_REPLACE : NLM_F_EXCL;
  if (int err = rtnl_route_add(sk, route->get(), flags); err < 0) {
    return NlError(err, absl::StrCat("cannot add route ", Describe(spec)));
  }
  return absl::OkStatus();
}

absl::Status DeleteRouteIfExists(nl_sock* sk, const RouteSpec& spec) {
  absl::StatusOr<RoutePtr> route = BuildRoute(spec);
  if (!route.ok()) return route.status();
  // Wildcards for the kernel's match: any scope, any protocol.
  rtnl_route_set_scope(route->get(), RT_SCOPE_NOWHERE);
  rtnl_route_set_protocol(route->get(), RTPROT_UNSPEC);
  int err = rtnl_route_delete(sk, route->get(), 0);
  if (err < 0 && !IsNlNotFound(err)) {
    return NlError(err, absl::StrCat("cannot delete route ", Describe(spec)));
  }
  return absl::OkStatus();
}

absl::Status AddSourceRule(nl_sock* sk, const IpPrefix& source, uint32_t table, uint32_t priority) {
  absl::StatusOr<RulePtr> rule = BuildSourceRule(source, priority);
  if (!rule.ok()) return rule.status();
  rtnl_rule_set_action(rule->get(), FR_ACT_TO_TBL);
  rtnl_rule_set_table(rule->get(), table);
  if (int err = rtnl_rule_add(sk, rule->get(), NLM_F_EXCL); err < 0) {
    return NlError(err, absl::StrCat("cannot add rule from ", source.ToString(), " lookup ", table, " priority ",
                                     priority));
  }
  return absl::OkStatus();
}

absl::Status DeleteSourceRules(nl_sock* sk, const IpPrefix& source, uint32_t priority) {
  // The kernel deletes one matching rule per request; bounded, since a
  // source has one rule per priority unless someone added copies by hand.
  constexpr int kMaxCopies = 16;
  for (int i = 0; i < kMaxCopies; ++i) {
    absl::StatusOr<RulePtr> rule = BuildSourceRule(source, priority);
    if (!rule.ok()) return rule.status();
    int err = rtnl_rule_delete(sk, rule->get(), 0);
    if (err < 0) {
      if (IsNlNotFound(err)) return absl::OkStatus();
      return NlError(err, absl::StrCat("cannot delete rule from ", source.ToString(), " priority ", priority));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<uint32_t>> FindSourceRuleTable(nl_sock* sk, const IpPrefix& source,
                                                            uint32_t priority) {
  nl_cache* raw = nullptr;
  if (int err = rtnl_rule_alloc_cache(sk, AfOf(source.family()), &raw); err < 0) {
    return NlError(err, "cannot dump rules");
  }
  CachePtr cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr; obj = nl_cache_get_next(obj)) {
    auto* rule = reinterpret_cast<rtnl_rule*>(obj);
    if (rtnl_rule_get_prio(rule) != priority) continue;
    nl_addr* src = rtnl_rule_get_src(rule);
    std::optional<IpAddress> address = FromNlAddr(src);
    if (!address || IpPrefix(*address, static_cast<int>(nl_addr_get_prefixlen(src))) != source) continue;
    return std::optional<uint32_t>(rtnl_rule_get_table(rule));
  }
  return std::optional<uint32_t>();
}

std::string LinkMac(rtnl_link* link) {
  nl_addr* addr = rtnl_link_get_addr(link);
  if (addr == nullptr || nl_addr_get_len(addr) == 0) return "";
  char buf[64];
  return nl_addr2str(addr, buf, sizeof(buf));
}

}  // namespace ebpfcni::net
