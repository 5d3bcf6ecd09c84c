// Pure-logic parts of cni/net: names, MACs, spec validation, sysctl keys,
// namespace handle validation.
#include <fcntl.h>
#include <sys/stat.h>

#include <set>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cni/net/interface_name.h"
#include "cni/net/ipv6_readiness.h"
#include "cni/net/mac_address.h"
#include "cni/net/netns.h"
#include "cni/net/pod_network.h"
#include "cni/net/pod_network_plan.h"
#include "cni/net/sysctl.h"

namespace ebpfcni::net {
namespace {

using ::testing::HasSubstr;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

TEST(HostVethNameTest, IsDeterministicPrefixedAndFitsIfnamsiz) {
  std::string a = HostVethName("ebpf", "0123456789abcdef", "eth0");
  EXPECT_EQ(a, HostVethName("ebpf", "0123456789abcdef", "eth0"));
  EXPECT_EQ(a.size(), 15u);
  EXPECT_EQ(a.substr(0, 4), "ebpf");
  EXPECT_TRUE(ValidateInterfaceName(a, "host_ifname").ok());
}

TEST(HostVethNameTest, DiffersByContainerAndIfname) {
  std::set<std::string> names;
  for (int i = 0; i < 200; ++i) {
    names.insert(HostVethName("ebpf", "container-" + std::to_string(i), "eth0"));
    names.insert(HostVethName("ebpf", "container-" + std::to_string(i), "net1"));
  }
  EXPECT_EQ(names.size(), 400u);
}

TEST(HostVethNameTest, LongPrefixKeepsEightHashDigits) {
  std::string name = HostVethName("averyveryverylongprefix", "c", "eth0");
  EXPECT_EQ(name.size(), 15u);
  EXPECT_EQ(name.substr(0, 7), "averyve");
  EXPECT_NE(name, HostVethName("averyveryverylongprefix", "d", "eth0"));
}

TEST(InterfaceNameTest, RejectsWhatTheKernelRejects) {
  EXPECT_TRUE(ValidateInterfaceName("eth0", "f").ok());
  EXPECT_TRUE(ValidateInterfaceName("eth0.100", "f").ok());
  for (const char* bad : {"", ".", "..", "a/b", "a b", "a:b", "sixteen-chars-xx"}) {
    absl::Status s = ValidateInterfaceName(bad, "container_ifname");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("container_ifname")) << bad;
  }
}

TEST(MacAddressTest, ContainerMacSpellsIpv4AndIsLocalUnicast) {
  auto mac = ContainerMacFor({Ip("fd00::1:2"), Ip("10.244.1.5")});
  ASSERT_TRUE(mac.has_value());
  EXPECT_EQ(MacToString(*mac), "0a:58:0a:f4:01:05");
  auto v6 = ContainerMacFor({Ip("fd00::aabb:ccdd")});
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(MacToString(*v6), "0a:58:aa:bb:cc:dd");
  EXPECT_FALSE(ContainerMacFor({}).has_value());
}

TEST(MacAddressTest, HostMacIsLocallyAdministeredUnicastAndStable) {
  MacAddress a = HostMacFor("ebpf0123456789a");
  EXPECT_EQ(a, HostMacFor("ebpf0123456789a"));
  EXPECT_NE(a, HostMacFor("ebpf0123456789b"));
  EXPECT_EQ(a[0] & 0x03, 0x02);
}

PodNetworkSpec ValidDualStack() {
  PodNetworkSpec spec;
  spec.netns_path = "/run/netns/x";
  spec.container_ifname = "eth0";
  spec.host_ifname = "ebpf1234";
  spec.addresses = {Ip("10.0.0.5"), Ip("fd00::5")};
  spec.gateway_v4 = Ip("10.0.0.1");
  spec.gateway_v6 = Ip("fd00::1");
  return spec;
}

TEST(PlanPodNetworkTest, AcceptsDualStack) {
  absl::StatusOr<PodNetworkPlan> plan = PlanPodNetwork(ValidDualStack());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->families.size(), 2u);
  EXPECT_TRUE(plan->has_ipv6());
  EXPECT_EQ(plan->families[0].host_prefix_length(), 32);
  EXPECT_EQ(plan->families[1].host_prefix_length(), 128);
}

TEST(PlanPodNetworkTest, RejectsContractViolations) {
  struct Case {
    const char* why;
    void (*mutate)(PodNetworkSpec&);
    const char* message;
  };
  const Case cases[] = {
      {"no netns", [](PodNetworkSpec& s) { s.netns_path.clear(); }, "netns_path"},
      {"bad ifname", [](PodNetworkSpec& s) { s.container_ifname = "a/b"; }, "container_ifname"},
      {"long host name", [](PodNetworkSpec& s) { s.host_ifname = "0123456789abcdef"; },
       "host_ifname"},
      {"two v4", [](PodNetworkSpec& s) { s.addresses.push_back(Ip("10.0.0.6")); },
       "more than one IPv4"},
      {"no v6 gateway", [](PodNetworkSpec& s) { s.gateway_v6.reset(); }, "no IPv6 gateway"},
      {"wrong family gateway", [](PodNetworkSpec& s) { s.gateway_v4 = Ip("fd00::1"); },
       "not an IPv4"},
      {"gateway is pod", [](PodNetworkSpec& s) { s.gateway_v4 = Ip("10.0.0.5"); },
       "equals the pod address"},
      {"stray gateway",
       [](PodNetworkSpec& s) {
         s.addresses = {Ip("10.0.0.5")};
         s.gateway_v6 = Ip("fd00::1");
       },
       "gateway_v6"},
      {"mtu too small for v6", [](PodNetworkSpec& s) { s.mtu = 1000; }, "mtu 1000"},
      {"mtu too large", [](PodNetworkSpec& s) { s.mtu = 70000; }, "mtu 70000"},
  };
  for (const Case& c : cases) {
    PodNetworkSpec spec = ValidDualStack();
    c.mutate(spec);
    absl::StatusOr<PodNetworkPlan> plan = PlanPodNetwork(spec);
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument) << c.why;
    EXPECT_THAT(plan.status().message(), HasSubstr(c.message)) << c.why;
  }
}

TEST(PlanPodNetworkTest, Ipv4OnlyAllowsSmallMtu) {
  PodNetworkSpec spec = ValidDualStack();
  spec.addresses = {Ip("10.0.0.5")};
  spec.gateway_v6.reset();
  spec.mtu = 576;
  EXPECT_TRUE(PlanPodNetwork(spec).ok());
}

TEST(SysctlTest, ReadsKnownKeyAndReportsMissingOnes) {
  absl::StatusOr<std::string> forward = ReadSysctl("net/ipv4/ip_forward");
  ASSERT_TRUE(forward.ok()) << forward.status();
  EXPECT_TRUE(*forward == "0" || *forward == "1") << *forward;
  EXPECT_EQ(ReadSysctl("net/ipv4/conf/no-such-if-xyz/forwarding").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSysctl("../etc/passwd").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadSysctl("/net/ipv4/ip_forward").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OpenNetnsTest, AcceptsOnlyNetworkNamespaceHandles) {
  EXPECT_TRUE(OpenNetns("/proc/self/ns/net").ok());
  EXPECT_EQ(OpenNetns("/run/netns/cninet-does-not-exist").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(OpenNetns("").status().code(), absl::StatusCode::kInvalidArgument);
  absl::Status not_ns = OpenNetns("/proc/self/status").status();
  EXPECT_EQ(not_ns.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_ns.message(), HasSubstr("not a namespace"));
  absl::Status uts = OpenNetns("/proc/self/ns/uts").status();
  EXPECT_EQ(uts.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(uts.message(), HasSubstr("not a network namespace"));
}

TEST(Ipv6ReadinessTest, SolicitedNodeGroupKeepsLow24Bits) {
  EXPECT_EQ(SolicitedNodeGroup(Ip("fd00:c0de::1:a2b3:c4d5")).ToString(), "ff02::1:ffb3:c4d5");
  EXPECT_EQ(SolicitedNodeGroup(Ip("fe80::1")).ToString(), "ff02::1:ff00:1");
}

TEST(Ipv6ReadinessTest, LoopbackHasJoinedAllNodesButNotASolicitedNodeGroup) {
  // With only IPv4 addresses there is nothing to wait for.
  EXPECT_THAT(WaitForSolicitedNodeGroups("lo", {Ip("127.0.0.1")}, std::chrono::milliseconds(0)),
              ::testing::Truly([](const absl::StatusOr<bool>& r) { return r.ok() && *r; }));
  // lo never joins solicited-node groups for addresses it does not carry.
  absl::StatusOr<bool> joined =
      WaitForSolicitedNodeGroups("lo", {Ip("fd00:c0de::dead:beef")}, std::chrono::milliseconds(20));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_FALSE(*joined);
}

}  // namespace
}  // namespace ebpfcni::net
