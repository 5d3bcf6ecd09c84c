// SetupPodNetwork / TeardownPodNetwork / CheckPodNetwork against the real
// kernel (root required): two dual-stack "pods" in test-created namespaces,
// verified by CheckPodNetwork and by real TCP traffic pod->pod and
// pod->gateway. Every namespace, link and sysctl the test touches carries a
// pid-derived name and is removed/restored in TearDown, even on failure.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cni/net/ipv6_readiness.h"
#include "cni/net/netlink.h"
#include "cni/net/netns.h"
#include "cni/net/pod_network.h"
#include "cni/net/sysctl.h"
#include "cni/net/testing/test_netns.h"

namespace ebpfcni::net {
namespace {

using ::testing::HasSubstr;
using testing::SocketInNetns;
using testing::TestNetns;

IpAddress Ip(const std::string& text) { return *IpAddress::Parse(text); }

// "exists" / "absent" / the error, so a failed lookup shows up in the
// assertion message instead of crashing the test.
std::string ExistsOrError(const absl::StatusOr<bool>& exists) {
  if (!exists.ok()) return exists.status().ToString();
  return *exists ? "exists" : "absent";
}

// ---- Traffic ---------------------------------------------------------------

socklen_t ToSockaddr(const IpAddress& ip, uint16_t port, sockaddr_storage* out) {
  std::memset(out, 0, sizeof(*out));
  if (ip.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, ip.data(), 4);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, ip.data(), 16);
  return sizeof(sockaddr_in6);
}

IpAddress FromSockaddr(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    return IpAddress::FromV4Bytes(
        reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in&>(ss).sin_addr));
  }
  return IpAddress::FromV6Bytes(
      reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr));
}

bool WaitFor(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & events) != 0;
}

// Opens a TCP listener on server_ip inside server_netns, connects to it from
// client_netns and exchanges a message both ways. Returns the client address
// the server saw, so callers can assert traffic was routed, not NATed.
// Bounded: at most ~10 connect attempts of 1 s each.
absl::StatusOr<IpAddress> TcpExchange(int client_netns, int server_netns,
                                      const IpAddress& server_ip) {
  int af = server_ip.is_v4() ? AF_INET : AF_INET6;
  absl::StatusOr<UniqueFd> server = SocketInNetns(server_netns, af, SOCK_STREAM);
  if (!server.ok()) return server.status();
  sockaddr_storage addr;
  socklen_t len = ToSockaddr(server_ip, 0, &addr);
  if (::bind(server->get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(server->get(), 4) != 0) {
    return absl::InternalError(absl::StrCat("bind/listen on ", server_ip.ToString(), ": ",
                                            std::strerror(errno)));
  }
  socklen_t bound_len = sizeof(addr);
  ::getsockname(server->get(), reinterpret_cast<sockaddr*>(&addr), &bound_len);
  uint16_t port = ntohs(af == AF_INET ? reinterpret_cast<sockaddr_in&>(addr).sin_port
                                      : reinterpret_cast<sockaddr_in6&>(addr).sin6_port);

  std::string last_error = "no attempt";
  for (int attempt = 0; attempt < 10; ++attempt) {
    absl::StatusOr<UniqueFd> client = SocketInNetns(client_netns, af, SOCK_STREAM | SOCK_NONBLOCK);
    if (!client.ok()) return client.status();
    sockaddr_storage target;
    socklen_t target_len = ToSockaddr(server_ip, port, &target);
    int rc = ::connect(client->get(), reinterpret_cast<sockaddr*>(&target), target_len);
    if (rc != 0 && errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    if (!WaitFor(client->get(), POLLOUT, 1000)) {
      last_error = "connect timed out";
      continue;
    }
    int err = 0;
    socklen_t err_len = sizeof(err);
    ::getsockopt(client->get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) {
      last_error = std::strerror(err);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    if (!WaitFor(server->get(), POLLIN, 1000)) return absl::DeadlineExceededError("accept");
    sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    UniqueFd conn(::accept4(server->get(), reinterpret_cast<sockaddr*>(&peer), &peer_len,
                            SOCK_CLOEXEC));
    if (!conn.valid()) return absl::InternalError("accept failed");
    const char ping[] = "ping";
    char buf[8] = {};
    if (::send(client->get(), ping, 4, MSG_NOSIGNAL) != 4 || !WaitFor(conn.get(), POLLIN, 2000) ||
        ::recv(conn.get(), buf, sizeof(buf), 0) != 4 || std::string(buf, 4) != "ping") {
      return absl::InternalError("ping did not arrive");
    }
    if (::send(conn.get(), "pong", 4, MSG_NOSIGNAL) != 4 || !WaitFor(client->get(), POLLIN, 2000) ||
        ::recv(client->get(), buf, sizeof(buf), 0) != 4 || std::string(buf, 4) != "pong") {
      return absl::InternalError("pong did not arrive");
    }
    return FromSockaddr(peer);
  }
  return absl::UnavailableError(absl::StrCat("cannot connect to ", server_ip.ToString(), " port ",
                                             port, ": ", last_error));
}

// ---- Fixture ---------------------------------------------------------------

class PodNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    pid_t pid = ::getpid();
    // Unique per process: 7-char veth prefix, namespaces and address ranges.
    prefix_ = absl::StrFormat("ct%05x", pid & 0xfffff);
    for (const char* key : {kIpForward, kIpv6Forwarding}) {
      absl::StatusOr<std::string> value = ReadSysctl(key);
      ASSERT_TRUE(value.ok()) << value.status();
      saved_sysctls_.emplace_back(key, *value);
    }
    absl::StatusOr<UniqueFd> host = OpenCurrentNetns();
    ASSERT_TRUE(host.ok()) << host.status();
    host_netns_ = *std::move(host);
    int octet = pid % 250 + 1;
    gateway_v4_ = Ip(absl::StrCat("198.19.", octet, ".1"));
    gateway_v6_ = Ip(absl::StrFormat("fd00:c0de:%x::1", pid & 0xffff));
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<TestNetns> ns =
          TestNetns::Create(absl::StrFormat("cninet-test-%d-pod%d", pid, i));
      ASSERT_TRUE(ns.ok()) << ns.status();
      pods_.push_back(std::make_unique<TestNetns>(*std::move(ns)));
      PodNetworkSpec spec;
      spec.netns_path = pods_.back()->path();
      spec.container_ifname = "eth0";
      spec.host_ifname = HostVethName(prefix_, absl::StrCat("container-", i), "eth0");
      spec.mtu = 1400;
      spec.addresses = {Ip(absl::StrCat("198.19.", octet, ".", 10 + i)),
                        Ip(absl::StrFormat("fd00:c0de:%x::%d", pid & 0xffff, 10 + i))};
      spec.gateway_v4 = gateway_v4_;
      spec.gateway_v6 = gateway_v6_;
      specs_.push_back(spec);
    }
  }

  void TearDown() override {
    for (const PodNetworkSpec& spec : specs_) {
      absl::Status s = TeardownPodNetwork(spec);
      EXPECT_TRUE(s.ok()) << s;
    }
    testing::DeleteHostLinksWithPrefix(prefix_);
    pods_.clear();
    for (const auto& [key, value] : saved_sysctls_) {
      absl::Status s = WriteSysctl(key, value);
      EXPECT_TRUE(s.ok()) << s;
    }
  }

  int pod_fd(int i) const { return pods_[i]->fd(); }

  static constexpr char kIpForward[] = "net/ipv4/ip_forward";
  static constexpr char kIpv6Forwarding[] = "net/ipv6/conf/all/forwarding";

  std::string prefix_;
  UniqueFd host_netns_;
  IpAddress gateway_v4_;
  IpAddress gateway_v6_;
  std::vector<std::unique_ptr<TestNetns>> pods_;
  std::vector<PodNetworkSpec> specs_;
  std::vector<std::pair<std::string, std::string>> saved_sysctls_;
};

TEST_F(PodNetworkTest, TwoDualStackPodsPassCheckAndReachEachOtherAndTheGateway) {
  std::vector<PodNetworkInfo> infos;
  for (const PodNetworkSpec& spec : specs_) {
    absl::StatusOr<PodNetworkInfo> info = SetupPodNetwork(spec);
    ASSERT_TRUE(info.ok()) << info.status();
    infos.push_back(*info);
  }
  for (size_t i = 0; i < specs_.size(); ++i) {
    SCOPED_TRACE(specs_[i].host_ifname);
    EXPECT_TRUE(CheckPodNetwork(specs_[i]).ok()) << CheckPodNetwork(specs_[i]);
    EXPECT_GT(infos[i].host_ifindex, 0);
    EXPECT_GT(infos[i].container_ifindex, 0);
    // Container MAC spells the IPv4 address (0a:58:c6:13:<octet>:<10+i>).
    EXPECT_EQ(infos[i].container_mac.substr(0, 12), "0a:58:c6:13:");
    EXPECT_EQ(infos[i].host_mac.size(), 17u);
    absl::StatusOr<int> index = HostLinkIndex(specs_[i].host_ifname);
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(*index, infos[i].host_ifindex);
    EXPECT_EQ(ExistsOrError(LinkExistsInNetns(specs_[i].netns_path, "eth0")), "exists");
    // Setup returns only once the pod answers neighbour solicitations for
    // its IPv6 address; otherwise its first connection stalls for a second.
    absl::StatusOr<bool> solicitable = InNetns(pod_fd(i), [&] {
      return WaitForSolicitedNodeGroups("eth0", specs_[i].addresses, std::chrono::milliseconds(0));
    });
    EXPECT_TRUE(solicitable.ok() && *solicitable);
  }
  EXPECT_EQ(*ReadSysctl(kIpForward), "1");
  EXPECT_EQ(*ReadSysctl(kIpv6Forwarding), "1");

  for (int family = 0; family < 2; ++family) {
    const IpAddress& a = specs_[0].addresses[family];
    const IpAddress& b = specs_[1].addresses[family];
    SCOPED_TRACE(a.ToString());
    absl::StatusOr<IpAddress> seen = TcpExchange(pod_fd(0), pod_fd(1), b);
    ASSERT_TRUE(seen.ok()) << "pod A -> pod B: " << seen.status();
    EXPECT_EQ(*seen, a);
    seen = TcpExchange(pod_fd(1), pod_fd(0), a);
    ASSERT_TRUE(seen.ok()) << "pod B -> pod A: " << seen.status();
    EXPECT_EQ(*seen, b);
    const IpAddress& gateway = family == 0 ? gateway_v4_ : gateway_v6_;
    seen = TcpExchange(pod_fd(0), host_netns_.get(), gateway);
    ASSERT_TRUE(seen.ok()) << "pod A -> gateway: " << seen.status();
    EXPECT_EQ(*seen, a);
  }

  // Every host veth carries the same gateway addresses; removing one pod
  // must not take the gateway away from the others.
  ASSERT_TRUE(TeardownPodNetwork(specs_[0]).ok());
  EXPECT_TRUE(CheckPodNetwork(specs_[1]).ok()) << CheckPodNetwork(specs_[1]);
  for (const IpAddress& gateway : {gateway_v4_, gateway_v6_}) {
    absl::StatusOr<IpAddress> seen = TcpExchange(pod_fd(1), host_netns_.get(), gateway);
    ASSERT_TRUE(seen.ok()) << "pod B -> gateway after pod A left: " << seen.status();
  }
}

// The table of the source rule for an address inside a pod, if any.
std::optional<uint32_t> SourceRuleTable(int netns_fd, const IpAddress& address) {
  absl::StatusOr<std::optional<uint32_t>> table = InNetns(netns_fd, [&]() -> absl::StatusOr<std::optional<uint32_t>> {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    return FindSourceRuleTable(sk->get(), IpPrefix(address, address.max_prefix_length()), kSourceRulePriority);
  });
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *table : std::nullopt;
}

TEST_F(PodNetworkTest, LaterInterfacesOfAPodGetPoolAndSourceRoutingAndOutliveTheFirst) {
  const pid_t pid = ::getpid();
  const int octet = pid % 250 + 1;
  const IpPrefix pool_v4(Ip(absl::StrCat("198.19.", octet, ".0")), 24);
  const IpPrefix pool_v6(Ip(absl::StrFormat("fd00:c0de:%x::", pid & 0xffff)), 64);
  PodNetworkSpec eth0 = specs_[0];
  eth0.pools = {pool_v4, pool_v6};
  // net1: the same network (pool and gateway) as eth0.
  PodNetworkSpec net1 = eth0;
  net1.container_ifname = "net1";
  net1.host_ifname = HostVethName(prefix_, "container-0", "net1");
  net1.addresses = {Ip(absl::StrCat("198.19.", octet, ".20")), Ip(absl::StrFormat("fd00:c0de:%x::20", pid & 0xffff))};
  // net2: another network with a pool of its own.
  PodNetworkSpec net2 = eth0;
  net2.container_ifname = "net2";
  net2.host_ifname = HostVethName(prefix_, "container-0", "net2");
  net2.addresses = {Ip(absl::StrCat("198.18.", octet, ".10")), Ip(absl::StrFormat("fd00:c0df:%x::10", pid & 0xffff))};
  net2.gateway_v4 = Ip(absl::StrCat("198.18.", octet, ".1"));
  net2.gateway_v6 = Ip(absl::StrFormat("fd00:c0df:%x::1", pid & 0xffff));
  net2.pools = {IpPrefix(Ip(absl::StrCat("198.18.", octet, ".0")), 24),
                IpPrefix(Ip(absl::StrFormat("fd00:c0df:%x::", pid & 0xffff)), 64)};
  specs_.push_back(net1);  // torn down by the fixture, even on failure
  specs_.push_back(net2);

  absl::StatusOr<PodNetworkInfo> first = SetupPodNetwork(eth0);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<PodNetworkInfo> second = SetupPodNetwork(net1);
  ASSERT_TRUE(second.ok()) << second.status();
  absl::StatusOr<PodNetworkInfo> third = SetupPodNetwork(net2);
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_TRUE(SetupPodNetwork(specs_[1]).ok());  // a peer pod in eth0's network

  const IpPrefix any_v4(Ip("0.0.0.0"), 0);
  const IpPrefix any_v6(Ip("::"), 0);
  EXPECT_EQ(first->routes, (std::vector<PodRoute>{{any_v4, gateway_v4_}, {any_v6, gateway_v6_}}));
  EXPECT_TRUE(second->routes.empty()) << "same pool as eth0: reached through eth0";
  EXPECT_EQ(third->routes, (std::vector<PodRoute>{{net2.pools[0], *net2.gateway_v4}, {net2.pools[1], *net2.gateway_v6}}));
  EXPECT_FALSE(SourceRuleTable(pod_fd(0), eth0.addresses[0]).has_value());
  for (const PodNetworkSpec* spec : {&net1, &net2}) {
    for (const IpAddress& address : spec->addresses) {
      EXPECT_EQ(SourceRuleTable(pod_fd(0), address), kSourceTableBase + static_cast<uint32_t>(
                                                          spec == &net1 ? second->container_ifindex
                                                                        : third->container_ifindex))
          << address.ToString();
    }
  }

  eth0.routes = first->routes;
  net1.routes = second->routes;
  net2.routes = third->routes;
  for (const PodNetworkSpec* spec : {&eth0, &net1, &net2}) {
    EXPECT_TRUE(CheckPodNetwork(*spec).ok()) << spec->container_ifname << ": " << CheckPodNetwork(*spec);
  }
  // CHECK of a later interface as if it owned the default route fails.
  PodNetworkSpec wrong = net2;
  wrong.routes = first->routes;
  EXPECT_THAT(CheckPodNetwork(wrong).message(), HasSubstr("default route via"));

  // Each address answers from its own interface: the peer connects to it
  // and sees the reply (routed back by the host veth the address lives on).
  for (const PodNetworkSpec* spec : {&eth0, &net1, &net2}) {
    for (const IpAddress& address : spec->addresses) {
      absl::StatusOr<IpAddress> seen = TcpExchange(pod_fd(1), pod_fd(0), address);
      EXPECT_TRUE(seen.ok()) << "peer -> " << address.ToString() << ": " << seen.status();
    }
  }

  // The first interface goes: the others keep their routing and traffic.
  ASSERT_TRUE(TeardownPodNetwork(eth0).ok());
  for (const PodNetworkSpec* spec : {&net1, &net2}) {
    EXPECT_TRUE(CheckPodNetwork(*spec).ok()) << spec->container_ifname << ": " << CheckPodNetwork(*spec);
    absl::StatusOr<IpAddress> seen = TcpExchange(pod_fd(1), pod_fd(0), spec->addresses[0]);
    EXPECT_TRUE(seen.ok()) << "peer -> " << spec->addresses[0].ToString() << " after eth0 left: " << seen.status();
  }
  // Teardown removes a later interface's source rules too.
  ASSERT_TRUE(TeardownPodNetwork(net1).ok());
  for (const IpAddress& address : net1.addresses) {
    EXPECT_FALSE(SourceRuleTable(pod_fd(0), address).has_value()) << address.ToString();
  }
  EXPECT_TRUE(SourceRuleTable(pod_fd(0), net2.addresses[0]).has_value());
}

TEST_F(PodNetworkTest, SecondSetupIsAlreadyExistsAndLeavesThePodWorking) {
  ASSERT_TRUE(SetupPodNetwork(specs_[0]).ok());

  absl::StatusOr<PodNetworkInfo> again = SetupPodNetwork(specs_[0]);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr(specs_[0].host_ifname));

  // Same pod interface, new host name: refused because eth0 exists in the pod.
  PodNetworkSpec other = specs_[0];
  other.host_ifname = HostVethName(prefix_, "another-container", "eth0");
  absl::StatusOr<PodNetworkInfo> clash = SetupPodNetwork(other);
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(clash.status().message(), HasSubstr("eth0 already exists in " + other.netns_path));
  EXPECT_EQ(HostLinkIndex(other.host_ifname).status().code(), absl::StatusCode::kNotFound);

  EXPECT_TRUE(CheckPodNetwork(specs_[0]).ok()) << CheckPodNetwork(specs_[0]);
  absl::StatusOr<IpAddress> seen = TcpExchange(pod_fd(0), host_netns_.get(), gateway_v4_);
  EXPECT_TRUE(seen.ok()) << seen.status();
}

TEST_F(PodNetworkTest, TeardownRemovesEverythingAndIsIdempotent) {
  ASSERT_TRUE(SetupPodNetwork(specs_[0]).ok());
  ASSERT_TRUE(TeardownPodNetwork(specs_[0]).ok());
  EXPECT_EQ(HostLinkIndex(specs_[0].host_ifname).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ExistsOrError(LinkExistsInNetns(specs_[0].netns_path, "eth0")), "absent");
  absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
  ASSERT_TRUE(sk.ok());
  absl::StatusOr<std::vector<RouteEntry>> routes = ListMainRoutes(sk->get(), IpFamily::kIpv4);
  ASSERT_TRUE(routes.ok());
  for (const RouteEntry& route : *routes) {
    EXPECT_NE(route.destination, IpPrefix(specs_[0].addresses[0], 32));
  }
  EXPECT_TRUE(TeardownPodNetwork(specs_[0]).ok());

  // A fresh setup with the same names works after teardown.
  EXPECT_TRUE(SetupPodNetwork(specs_[0]).ok());
  EXPECT_TRUE(CheckPodNetwork(specs_[0]).ok());
}

TEST_F(PodNetworkTest, TeardownWithoutOrWithVanishedNetnsRemovesHostSide) {
  ASSERT_TRUE(SetupPodNetwork(specs_[0]).ok());
  ASSERT_TRUE(SetupPodNetwork(specs_[1]).ok());

  PodNetworkSpec no_netns = specs_[0];
  no_netns.netns_path.clear();
  EXPECT_TRUE(TeardownPodNetwork(no_netns).ok());
  EXPECT_EQ(HostLinkIndex(specs_[0].host_ifname).status().code(), absl::StatusCode::kNotFound);

  PodNetworkSpec gone = specs_[1];
  gone.netns_path = "/run/netns/cninet-never-existed";
  EXPECT_TRUE(TeardownPodNetwork(gone).ok());
  EXPECT_EQ(HostLinkIndex(specs_[1].host_ifname).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PodNetworkTest, CheckNamesTheFirstDifference) {
  ASSERT_TRUE(SetupPodNetwork(specs_[0]).ok());
  const PodNetworkSpec& spec = specs_[0];

  // Remove the pod's IPv6 address.
  absl::Status removed = InNetns(pod_fd(0), [&]() -> absl::Status {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    AddrPtr addr(rtnl_addr_alloc());
    NlAddrPtr local = ToNlAddr(spec.addresses[1], 128);
    absl::StatusOr<LinkPtr> link = GetLinkByName(sk->get(), "eth0");
    if (!link.ok()) return link.status();
    rtnl_addr_set_ifindex(addr.get(), rtnl_link_get_ifindex(link->get()));
    rtnl_addr_set_family(addr.get(), AF_INET6);
    rtnl_addr_set_local(addr.get(), local.get());
    int err = rtnl_addr_delete(sk->get(), addr.get(), 0);
    return err < 0 ? NlError(err, "delete address") : absl::OkStatus();
  });
  ASSERT_TRUE(removed.ok()) << removed;
  absl::Status check = CheckPodNetwork(spec);
  EXPECT_EQ(check.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(check.message(), absl::StrCat("address ", spec.addresses[1].ToString(),
                                          "/128 missing on eth0 in ", spec.netns_path));

  // Put the pod back, then remove the host route to the pod's IPv4 address.
  ASSERT_TRUE(TeardownPodNetwork(spec).ok());
  ASSERT_TRUE(SetupPodNetwork(spec).ok());
  absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
  ASSERT_TRUE(sk.ok());
  absl::StatusOr<int> host_index = HostLinkIndex(spec.host_ifname);
  ASSERT_TRUE(host_index.ok());
  ASSERT_TRUE(DeleteRouteIfExists(sk->get(), {IpPrefix(spec.addresses[0], 32), *host_index,
                                              std::nullopt, RT_SCOPE_LINK})
                  .ok());
  check = CheckPodNetwork(spec);
  EXPECT_EQ(check.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(check.message(), absl::StrCat("route ", spec.addresses[0].ToString(), "/32 dev ",
                                          spec.host_ifname, " missing on the host"));

  // A different MTU is also a difference.
  PodNetworkSpec other_mtu = spec;
  other_mtu.mtu = 1500;
  check = CheckPodNetwork(other_mtu);
  EXPECT_EQ(check.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(check.message(), HasSubstr("has mtu 1400, expected 1500"));

  // And a missing pod.
  ASSERT_TRUE(TeardownPodNetwork(spec).ok());
  check = CheckPodNetwork(spec);
  EXPECT_EQ(check.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(check.message(), HasSubstr("does not exist"));
}

TEST_F(PodNetworkTest, InvalidNetnsPathIsRejectedBeforeAnyChange) {
  PodNetworkSpec spec = specs_[0];
  spec.netns_path = "/run/netns/cninet-never-existed";
  absl::StatusOr<PodNetworkInfo> missing = SetupPodNetwork(spec);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(spec.netns_path));

  spec.netns_path = "/proc/self/status";
  absl::StatusOr<PodNetworkInfo> not_ns = SetupPodNetwork(spec);
  EXPECT_EQ(not_ns.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_ns.status().message(), HasSubstr("not a namespace"));

  spec.netns_path = "/proc/self/ns/uts";
  EXPECT_EQ(SetupPodNetwork(spec).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HostLinkIndex(spec.host_ifname).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PodNetworkTest, FailureAfterCreatingTheVethRollsBack) {
  // A route to the gateway already present in the pod (through lo, with the
  // metric the first interface's route would get) makes the pod-side route
  // step fail after the veth pair exists. (A default route would not: the
  // interface would then be a later one, with routes of its own.)
  absl::Status prepared = InNetns(pod_fd(0), [&]() -> absl::Status {
    absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
    if (!sk.ok()) return sk.status();
    absl::StatusOr<LinkPtr> lo = GetLinkByName(sk->get(), "lo");
    if (!lo.ok()) return lo.status();
    if (absl::Status s = SetLinkUp(sk->get(), lo->get()); !s.ok()) return s;
    return AddRoute(sk->get(),
                    {IpPrefix(gateway_v4_, 32), rtnl_link_get_ifindex(lo->get()), std::nullopt, RT_SCOPE_LINK},
                    /*replace=*/false);
  });
  ASSERT_TRUE(prepared.ok()) << prepared;

  absl::StatusOr<PodNetworkInfo> info = SetupPodNetwork(specs_[0]);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kFailedPrecondition) << info.status();
  EXPECT_EQ(HostLinkIndex(specs_[0].host_ifname).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ExistsOrError(LinkExistsInNetns(specs_[0].netns_path, "eth0")), "absent");
}

TEST_F(PodNetworkTest, AddressReusedByANewPodSurvivesTeardownOfTheOldOne) {
  // IPAM handed pod 0's addresses to pod 1 while pod 0's veth leaked.
  PodNetworkSpec reuse = specs_[1];
  reuse.addresses = specs_[0].addresses;
  ASSERT_TRUE(SetupPodNetwork(specs_[0]).ok());
  absl::StatusOr<PodNetworkInfo> info = SetupPodNetwork(reuse);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(CheckPodNetwork(reuse).ok()) << CheckPodNetwork(reuse);

  ASSERT_TRUE(TeardownPodNetwork(specs_[0]).ok());
  EXPECT_TRUE(CheckPodNetwork(reuse).ok()) << CheckPodNetwork(reuse);
  absl::StatusOr<IpAddress> seen = TcpExchange(host_netns_.get(), pod_fd(1), reuse.addresses[0]);
  EXPECT_TRUE(seen.ok()) << "host -> reused pod address: " << seen.status();
  ASSERT_TRUE(TeardownPodNetwork(reuse).ok());
}

// Inode of the calling thread's network namespace.
ino_t CurrentNetnsInode() {
  struct stat st {};
  ::stat("/proc/thread-self/ns/net", &st);
  return st.st_ino;
}

TEST_F(PodNetworkTest, ConcurrentSetupsFromThreadsKeepEachThreadInItsNamespace) {
  const ino_t host_inode = CurrentNetnsInode();
  absl::Status results[2];
  ino_t thread_inodes_after[2] = {0, 0};
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back([&, i] {
        results[i] = SetupPodNetwork(specs_[i]).status();
        thread_inodes_after[i] = CurrentNetnsInode();
      });
    }
    for (std::thread& t : threads) t.join();
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(results[i].ok()) << results[i];
    EXPECT_EQ(thread_inodes_after[i], host_inode) << "thread " << i << " left in another netns";
    EXPECT_TRUE(CheckPodNetwork(specs_[i]).ok()) << CheckPodNetwork(specs_[i]);
  }
  EXPECT_EQ(CurrentNetnsInode(), host_inode);
  absl::StatusOr<IpAddress> seen = TcpExchange(pod_fd(0), pod_fd(1), specs_[1].addresses[0]);
  EXPECT_TRUE(seen.ok()) << seen.status();
}

TEST_F(PodNetworkTest, InNetnsReturnsToTheOriginalNamespaceOnEveryPath) {
  const ino_t host_inode = CurrentNetnsInode();
  ino_t inside = 0;
  absl::Status failed = InNetns(pod_fd(0), [&]() -> absl::Status {
    inside = CurrentNetnsInode();
    return absl::InternalError("early return");
  });
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
  EXPECT_NE(inside, host_inode);
  EXPECT_EQ(CurrentNetnsInode(), host_inode);
  absl::StatusOr<int> value = InNetns(pod_fd(1), [&]() -> absl::StatusOr<int> { return 7; });
  EXPECT_EQ(value.value_or(0), 7);
  EXPECT_EQ(CurrentNetnsInode(), host_inode);
}

TEST_F(PodNetworkTest, Ipv4OnlyPodLeavesIpv6ForwardingAlone) {
  ASSERT_TRUE(WriteSysctl(kIpv6Forwarding, "0").ok());
  PodNetworkSpec spec = specs_[0];
  spec.addresses = {specs_[0].addresses[0]};
  spec.gateway_v6.reset();
  ASSERT_TRUE(SetupPodNetwork(spec).ok());
  EXPECT_TRUE(CheckPodNetwork(spec).ok()) << CheckPodNetwork(spec);
  EXPECT_EQ(*ReadSysctl(kIpv6Forwarding), "0");
  absl::StatusOr<IpAddress> seen = TcpExchange(pod_fd(0), host_netns_.get(), gateway_v4_);
  EXPECT_TRUE(seen.ok()) << seen.status();
}

}  // namespace
}  // namespace ebpfcni::net
