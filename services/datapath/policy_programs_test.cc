// The policy datapath in the kernel, driven with BPF_PROG_TEST_RUN and
// frames from PacketBuilder (like Katran's simulator fixtures): every
// verdict path and drop reason, both families, wildcards and lookup order,
// conntrack, fragments, IP options, malformed packets, events, counters,
// side-effect-free tracing, random packets and atomic policy swaps.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_objects.h"
#include "services/datapath/conntrack_map.h"
#include "services/datapath/ipcache_map.h"
#include "services/datapath/packet_builder.h"
#include "services/datapath/policy_map.h"
#include "services/datapath/program_runner.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

// BPF_PROG_TEST_RUN delivers to loopback (ifindex 1) unless told otherwise.
constexpr uint32_t kIfindex = 1;
constexpr uint32_t kEndpointId = 10;
constexpr uint32_t kPodIdentity = 1000;
constexpr uint32_t kPeerIdentity = 2000;
constexpr uint32_t kOtherIdentity = 3000;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

const IpAddress kPod4 = Ip("10.0.0.1");
const IpAddress kPeer4 = Ip("10.0.0.2");
const IpAddress kOther4 = Ip("10.0.0.3");
const IpAddress kWorld4 = Ip("192.0.2.1");
const IpAddress kPod6 = Ip("fd00::1");
const IpAddress kPeer6 = Ip("fd00::2");
const IpAddress kWorld6 = Ip("2001:db8::1");

PolicyRule Rule(PolicyDirection direction, uint32_t peer, uint8_t protocol, uint16_t port,
                PolicyAction action, uint32_t rule_id) {
  return PolicyRule{direction, peer, protocol, port, action, rule_id};
}

constexpr PolicyDirection kIngress = PolicyDirection::kIngress;
constexpr PolicyDirection kEgress = PolicyDirection::kEgress;
constexpr PolicyAction kAllow = PolicyAction::kAllow;
constexpr PolicyAction kDeny = PolicyAction::kDeny;

struct Event {
  ebpfcni_event raw;
};

class PolicyProgramsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BpfLoadOptions options;
    options.conntrack.tcp_closing_ns = 50'000'000;  // 50 ms, so expiry is testable
    absl::StatusOr<std::unique_ptr<BpfObjects>> loaded = BpfObjects::Load(options);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    bpf_ = *std::move(loaded);
    policy_ = std::make_unique<PolicyMap>(*bpf_);
    ipcache_ = std::make_unique<IpCacheMap>(*bpf_);
    ASSERT_TRUE(bpf_->SetEndpointForIfindex(kIfindex, kEndpointId, kPodIdentity).ok());
    for (const auto& [address, identity] :
         {std::pair{kPod4, kPodIdentity}, std::pair{kPeer4, kPeerIdentity},
          std::pair{kOther4, kOtherIdentity}, std::pair{kPod6, kPodIdentity},
          std::pair{kPeer6, kPeerIdentity}}) {
      ASSERT_TRUE(ipcache_->Upsert(IpPrefix(address, address.max_prefix_length()), identity).ok());
    }
    ring_ = ring_buffer__new(bpf_->events_fd(), &PolicyProgramsTest::OnEvent, &events_, nullptr);
    ASSERT_NE(ring_, nullptr);
  }
  void TearDown() override {
    if (ring_ != nullptr) ring_buffer__free(ring_);
  }

  static int OnEvent(void* context, void* data, size_t size) {
    if (size >= sizeof(ebpfcni_event)) {
      Event event;
      std::memcpy(&event.raw, data, sizeof(event.raw));
      static_cast<std::vector<Event>*>(context)->push_back(event);
    }
    return 0;
  }
  std::vector<Event> DrainEvents() {
    events_.clear();
    ring_buffer__consume(ring_);
    return events_;
  }

  // A packet the pod sends (its egress policy decides).
  int FromPod(const PacketBuilder& packet) { return Run(bpf_->from_container_fd(), packet); }
  // A packet for the pod (its ingress policy decides).
  int ToPod(const PacketBuilder& packet) { return Run(bpf_->to_container_fd(), packet); }
  int Run(int fd, const PacketBuilder& packet) {
    absl::StatusOr<int> action = RunProgram(fd, kIfindex, packet.Build());
    EXPECT_TRUE(action.ok()) << action.status();
    return action.value_or(-1);
  }
  TraceResult TraceFromPod(const PacketBuilder& packet) {
    return Trace(bpf_->from_container_fd(), packet.Build());
  }
  TraceResult TraceToPod(const PacketBuilder& packet) {
    return Trace(bpf_->to_container_fd(), packet.Build());
  }
  TraceResult Trace(int fd, const std::vector<uint8_t>& frame) {
    absl::StatusOr<TraceResult> result = TraceProgram(fd, kIfindex, frame);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.value_or(TraceResult{});
  }
  void SetPolicy(const EndpointPolicy& policy) {
    absl::Status status = policy_->Replace(kEndpointId, policy);
    ASSERT_TRUE(status.ok()) << status;
  }
  uint64_t Metric(uint32_t slot) {
    absl::StatusOr<std::vector<PacketCount>> metrics = bpf_->ReadMetrics();
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    return metrics.ok() ? (*metrics)[slot].packets : 0;
  }
  size_t ConntrackEntries() {
    absl::StatusOr<std::vector<ConntrackEntry>> entries = ConntrackMap(*bpf_).List();
    EXPECT_TRUE(entries.ok()) << entries.status();
    return entries.ok() ? entries->size() : 0;
  }

  std::unique_ptr<BpfObjects> bpf_;
  std::unique_ptr<PolicyMap> policy_;
  std::unique_ptr<IpCacheMap> ipcache_;
  ring_buffer* ring_ = nullptr;
  std::vector<Event> events_;
};

EndpointPolicy Isolated(std::vector<PolicyRule> rules = {}) {
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.egress_isolated = true;
  policy.rules = std::move(rules);
  return policy;
}

// ---- identity ---------------------------------------------------------------

TEST_F(PolicyProgramsTest, EndpointWithoutIdentityIsInitAndDropsAllButArpAndNeighbourDiscovery) {
  ASSERT_TRUE(bpf_->SetEndpointForIfindex(kIfindex, kEndpointId, /*identity=*/0).ok());
  // No policy at all: without the identity check everything would pass.
  EXPECT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 40000, 80)), kTcActShot);
  EXPECT_EQ(ToPod(PacketBuilder::Udp(kPeer6, kPod6, 53, 40000)), kTcActShot);
  TraceResult trace = TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 40000, 80));
  EXPECT_EQ(trace.verdict, EBPFCNI_VERDICT_DROPPED);
  EXPECT_EQ(trace.reason, EBPFCNI_DROP_INIT_IDENTITY);
  EXPECT_EQ(trace.endpoint_identity, EBPFCNI_IDENTITY_INIT);

  absl::StatusOr<int> arp = RunProgram(bpf_->from_container_fd(), kIfindex, BuildArpFrame());
  ASSERT_TRUE(arp.ok());
  EXPECT_EQ(*arp, kTcActOk);
  for (uint8_t nd_type : {133, 134, 135, 136, 137}) {
    EXPECT_EQ(FromPod(PacketBuilder::Icmp(kPod6, kPeer6, nd_type)), kTcActOk) << int(nd_type);
  }
  EXPECT_EQ(FromPod(PacketBuilder::Icmp(kPod6, kPeer6, 128)), kTcActShot);  // echo is not ND

  std::vector<Event> events = DrainEvents();
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0].raw.type, EBPFCNI_EVENT_DROP);
  EXPECT_EQ(events[0].raw.reason, EBPFCNI_DROP_INIT_IDENTITY);
  EXPECT_EQ(events[0].raw.src_identity, EBPFCNI_IDENTITY_INIT);
  EXPECT_EQ(Metric(EBPFCNI_METRIC_DROP(EBPFCNI_DROP_INIT_IDENTITY)), 3u);
}

TEST_F(PolicyProgramsTest, LinkLocalMulticastListenerDiscoveryPassesLikeNeighbourDiscovery) {
  // An isolated pod without rules: its kernel's MLD reports (behind the
  // hop-by-hop router alert they carry) and the node's queries pass; the
  // same ICMPv6 types from a routable source do not.
  SetPolicy(Isolated());
  const IpAddress pod_link_local = Ip("fe80::1234"), node_link_local = Ip("fe80::1");
  const IpAddress all_mld_routers = Ip("ff02::16"), all_nodes = Ip("ff02::1");
  const IpAddress unspecified = Ip("::");
  uint64_t neighbour_before = Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_NEIGHBOUR));
  for (uint8_t report : {131, 132, 143}) {
    EXPECT_EQ(FromPod(PacketBuilder::Icmp(pod_link_local, all_mld_routers, report)
                          .Ipv6Extension(kIpv6HopByHop)),
              kTcActOk)
        << int(report);
  }
  EXPECT_EQ(FromPod(PacketBuilder::Icmp(unspecified, all_mld_routers, 143)
                        .Ipv6Extension(kIpv6HopByHop)),
            kTcActOk);
  EXPECT_EQ(ToPod(PacketBuilder::Icmp(node_link_local, all_nodes, 130)
                      .Ipv6Extension(kIpv6HopByHop)),
            kTcActOk);
  EXPECT_EQ(Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_NEIGHBOUR)),
            neighbour_before + 5);
  EXPECT_TRUE(DrainEvents().empty());
  // MLD types from the pod's routable address, to a peer, are policy's.
  EXPECT_EQ(FromPod(PacketBuilder::Icmp(kPod6, kPeer6, 143)), kTcActShot);
  EXPECT_EQ(ToPod(PacketBuilder::Icmp(kPeer6, kPod6, 130)), kTcActShot);
  // Other ICMPv6 from a link-local source is policy's too.
  EXPECT_EQ(FromPod(PacketBuilder::Icmp(pod_link_local, all_nodes, 128)), kTcActShot);
}

// ---- not isolated / default deny -------------------------------------------

TEST_F(PolicyProgramsTest, WithoutPolicyEverythingPassesAndFlowsAreTracked) {
  TraceResult first = TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 40000, 80));
  EXPECT_EQ(first.verdict, EBPFCNI_VERDICT_ALLOWED_NOT_ISOLATED);
  EXPECT_EQ(first.peer_identity, kPeerIdentity);
  EXPECT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 40000, 80)), kTcActOk);
  EXPECT_EQ(ToPod(PacketBuilder::Udp(kWorld4, kPod4, 53, 40000)), kTcActOk);
  // The flow now has a conntrack entry: the next packet skips policy.
  EXPECT_EQ(TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 40000, 80, kTcpAck)).verdict,
            EBPFCNI_VERDICT_ALLOWED_CONNTRACK);
}

TEST_F(PolicyProgramsTest, IsolatedWithoutRulesDeniesBothDirectionsAndFamiliesByDefault) {
  SetPolicy(Isolated());
  for (const PacketBuilder& packet :
       {PacketBuilder::Tcp(kPod4, kPeer4, 40000, 80), PacketBuilder::Tcp(kPod6, kPeer6, 40000, 80),
        PacketBuilder::Udp(kPod4, kWorld4, 40000, 53), PacketBuilder::Icmp(kPod4, kPeer4, 8, 7)}) {
    TraceResult trace = TraceFromPod(packet);
    EXPECT_EQ(trace.verdict, EBPFCNI_VERDICT_DROPPED);
    EXPECT_EQ(trace.reason, EBPFCNI_DROP_POLICY_DEFAULT_DENY);
    EXPECT_EQ(trace.rule_id, 0u);
    EXPECT_EQ(FromPod(packet), kTcActShot);
  }
  for (const PacketBuilder& packet :
       {PacketBuilder::Tcp(kPeer4, kPod4, 40000, 80), PacketBuilder::Tcp(kPeer6, kPod6, 40000, 80),
        PacketBuilder::Sctp(kPeer4, kPod4, 40000, 9)}) {
    EXPECT_EQ(TraceToPod(packet).reason, EBPFCNI_DROP_POLICY_DEFAULT_DENY);
    EXPECT_EQ(ToPod(packet), kTcActShot);
  }
  EXPECT_EQ(Metric(EBPFCNI_METRIC_DROP(EBPFCNI_DROP_POLICY_DEFAULT_DENY)), 7u);
}

TEST_F(PolicyProgramsTest, OnlyTheIsolatedDirectionIsEnforced) {
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  SetPolicy(policy);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 40000, 80)).verdict,
            EBPFCNI_VERDICT_ALLOWED_NOT_ISOLATED);
  EXPECT_EQ(TraceToPod(PacketBuilder::Tcp(kPeer4, kPod4, 40000, 80)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
}

// ---- rules, wildcards, lookup order ----------------------------------------

TEST_F(PolicyProgramsTest, AllowRuleMatchesPeerProtocolAndPortOnly) {
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoTcp, 80, kAllow, 7)}));
  TraceResult allowed = TraceToPod(PacketBuilder::Tcp(kPeer4, kPod4, 40000, 80));
  EXPECT_EQ(allowed.verdict, EBPFCNI_VERDICT_ALLOWED_POLICY);
  EXPECT_EQ(allowed.rule_id, 7u);
  EXPECT_EQ(TraceToPod(PacketBuilder::Tcp(kPeer6, kPod6, 40000, 80)).rule_id, 7u);
  EXPECT_EQ(TraceToPod(PacketBuilder::Tcp(kPeer4, kPod4, 40000, 81)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  EXPECT_EQ(TraceToPod(PacketBuilder::Udp(kPeer4, kPod4, 40000, 80)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  EXPECT_EQ(TraceToPod(PacketBuilder::Tcp(kOther4, kPod4, 40000, 80)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  // The rule is for ingress: the same tuple leaving the pod is not allowed.
  EXPECT_EQ(TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 40000, 80)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  // Unknown addresses are their family's world identity: a rule for one
  // family's world admits nothing of the other (what ::/0 compiles to must
  // not open IPv4).
  SetPolicy(Isolated({Rule(kIngress, EBPFCNI_IDENTITY_WORLD_IPV4, 0, 0, kAllow, 9)}));
  TraceResult world4 = TraceToPod(PacketBuilder::Udp(kWorld4, kPod4, 1, 2));
  EXPECT_EQ(world4.rule_id, 9u);
  EXPECT_EQ(world4.peer_identity, uint32_t{EBPFCNI_IDENTITY_WORLD_IPV4});
  EXPECT_EQ(TraceToPod(PacketBuilder::Udp(kPeer4, kPod4, 1, 2)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  TraceResult world6 = TraceToPod(PacketBuilder::Udp(kWorld6, kPod6, 1, 2));
  EXPECT_EQ(world6.peer_identity, uint32_t{EBPFCNI_IDENTITY_WORLD_IPV6});
  EXPECT_EQ(world6.reason, EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  SetPolicy(Isolated({Rule(kIngress, EBPFCNI_IDENTITY_WORLD_IPV6, 0, 0, kAllow, 10)}));
  EXPECT_EQ(TraceToPod(PacketBuilder::Udp(kWorld6, kPod6, 1, 2)).rule_id, 10u);
  EXPECT_EQ(TraceToPod(PacketBuilder::Udp(kWorld4, kPod4, 1, 2)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  // The umbrella world identity (2) is a label name; no packet carries it.
  SetPolicy(Isolated({Rule(kIngress, EBPFCNI_IDENTITY_WORLD, 0, 0, kAllow, 2)}));
  EXPECT_EQ(TraceToPod(PacketBuilder::Udp(kWorld4, kPod4, 1, 2)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
}

TEST_F(PolicyProgramsTest, LookupOrderIsMostSpecificFirst) {
  // One entry per level of the documented order, alternating actions so
  // that the wrong winner shows up as the wrong verdict or rule id.
  SetPolicy(Isolated({
      Rule(kIngress, kPeerIdentity, kProtoTcp, 80, kDeny, 1),  // (id, proto, port)
      Rule(kIngress, kPeerIdentity, kProtoTcp, 0, kAllow, 2),  // (id, proto, any)
      Rule(kIngress, kPeerIdentity, 0, 0, kDeny, 3),           // (id, any, any)
      Rule(kIngress, 0, kProtoUdp, 53, kAllow, 4),             // (any, proto, port)
      Rule(kIngress, 0, kProtoUdp, 0, kDeny, 5),               // (any, proto, any)
      Rule(kIngress, 0, 0, 0, kAllow, 6),                      // (any, any, any)
  }));
  struct Case {
    PacketBuilder packet;
    uint32_t verdict;
    uint32_t rule_id;
  };
  const Case cases[] = {
      {PacketBuilder::Tcp(kPeer4, kPod4, 1, 80), EBPFCNI_VERDICT_DROPPED, 1},
      {PacketBuilder::Tcp(kPeer4, kPod4, 1, 81), EBPFCNI_VERDICT_ALLOWED_POLICY, 2},
      {PacketBuilder::Udp(kPeer4, kPod4, 1, 53), EBPFCNI_VERDICT_DROPPED, 3},  // id beats any
      {PacketBuilder::Udp(kOther4, kPod4, 1, 53), EBPFCNI_VERDICT_ALLOWED_POLICY, 4},
      {PacketBuilder::Udp(kOther4, kPod4, 1, 54), EBPFCNI_VERDICT_DROPPED, 5},
      {PacketBuilder::Tcp(kOther4, kPod4, 1, 80), EBPFCNI_VERDICT_ALLOWED_POLICY, 6},
      {PacketBuilder::Tcp(kPeer6, kPod6, 1, 80), EBPFCNI_VERDICT_DROPPED, 1},
      {PacketBuilder::Udp(kWorld4, kPod4, 1, 53), EBPFCNI_VERDICT_ALLOWED_POLICY, 4},
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    TraceResult trace = TraceToPod(cases[i].packet);
    EXPECT_EQ(trace.verdict, cases[i].verdict) << "case " << i;
    EXPECT_EQ(trace.rule_id, cases[i].rule_id) << "case " << i;
    if (cases[i].verdict == EBPFCNI_VERDICT_DROPPED) {
      EXPECT_EQ(trace.reason, EBPFCNI_DROP_POLICY_DENY) << "case " << i;
    }
  }
}

TEST_F(PolicyProgramsTest, UdpSctpAndIcmpRulesMatchTheirPortOrType) {
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoUdp, 53, kAllow, 1),
                      Rule(kEgress, kPeerIdentity, kProtoSctp, 9, kAllow, 2),
                      Rule(kEgress, kPeerIdentity, kProtoIcmp, 8, kAllow, 3),
                      Rule(kEgress, kPeerIdentity, kProtoIcmpV6, 128, kAllow, 4)}));
  EXPECT_EQ(TraceFromPod(PacketBuilder::Udp(kPod4, kPeer4, 5000, 53)).rule_id, 1u);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Sctp(kPod4, kPeer4, 5000, 9)).rule_id, 2u);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Icmp(kPod4, kPeer4, 8, 77)).rule_id, 3u);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Icmp(kPod6, kPeer6, 128, 77)).rule_id, 4u);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Icmp(kPod4, kPeer4, 13, 77)).verdict,  // timestamp
            EBPFCNI_VERDICT_DROPPED);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Sctp(kPod4, kPeer4, 5000, 10)).verdict,
            EBPFCNI_VERDICT_DROPPED);
}

// ---- conntrack ---------------------------------------------------------------

TEST_F(PolicyProgramsTest, RepliesOfAllowedFlowsPassWithoutPolicy) {
  // The pod may connect out to the peer's port 80; nothing may come in.
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1),
                      Rule(kEgress, kPeerIdentity, kProtoIcmp, 8, kAllow, 2)}));
  for (auto [pod, peer] : {std::pair{kPod4, kPeer4}, std::pair{kPod6, kPeer6}}) {
    EXPECT_EQ(ToPod(PacketBuilder::Tcp(peer, pod, 80, 40000, kTcpSyn | kTcpAck)), kTcActShot)
        << "a reply before the request must not pass";
    EXPECT_EQ(FromPod(PacketBuilder::Tcp(pod, peer, 40000, 80)), kTcActOk);
    TraceResult reply = TraceToPod(PacketBuilder::Tcp(peer, pod, 80, 40000, kTcpSyn | kTcpAck));
    EXPECT_EQ(reply.verdict, EBPFCNI_VERDICT_ALLOWED_CONNTRACK);
    EXPECT_EQ(ToPod(PacketBuilder::Tcp(peer, pod, 80, 40000, kTcpSyn | kTcpAck)), kTcActOk);
    EXPECT_EQ(FromPod(PacketBuilder::Tcp(pod, peer, 40000, 80, kTcpAck)), kTcActOk);
    // Another port of the same peer is a different flow.
    EXPECT_EQ(ToPod(PacketBuilder::Tcp(peer, pod, 80, 40001, kTcpSyn | kTcpAck)), kTcActShot);
    // A new inbound connection from the peer is still denied.
    EXPECT_EQ(ToPod(PacketBuilder::Tcp(peer, pod, 40000, 80)), kTcActShot);
  }
  // ICMP echo: the reply matches through the identifier.
  EXPECT_EQ(FromPod(PacketBuilder::Icmp(kPod4, kPeer4, 8, 4242)), kTcActOk);
  EXPECT_EQ(ToPod(PacketBuilder::Icmp(kPeer4, kPod4, 0, 4242)), kTcActOk);
  EXPECT_EQ(ToPod(PacketBuilder::Icmp(kPeer4, kPod4, 0, 4243)), kTcActShot);
}

TEST_F(PolicyProgramsTest, IcmpErrorsAboutTrackedFlowsPassOthersFacePolicy) {
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoUdp, 53, kAllow, 1),
                      Rule(kEgress, kPeerIdentity, kProtoTcp, 443, kAllow, 2)}));
  std::vector<uint8_t> query = PacketBuilder::Udp(kPod4, kPeer4, 5000, 53).Build();
  std::vector<uint8_t> query6 = PacketBuilder::Udp(kPod6, kPeer6, 5000, 53).Build();
  std::vector<uint8_t> tls6 = PacketBuilder::Tcp(kPod6, kPeer6, 6000, 443).Build();
  ASSERT_EQ(Run(bpf_->from_container_fd(), PacketBuilder::Udp(kPod4, kPeer4, 5000, 53)), kTcActOk);
  ASSERT_EQ(Run(bpf_->from_container_fd(), PacketBuilder::Udp(kPod6, kPeer6, 5000, 53)), kTcActOk);
  ASSERT_EQ(Run(bpf_->from_container_fd(), PacketBuilder::Tcp(kPod6, kPeer6, 6000, 443)), kTcActOk);
  // Port unreachable about the query: related, passes the isolated ingress.
  EXPECT_EQ(TraceToPod(PacketBuilder::Icmp(kPeer4, kPod4, 3).Quote(query)).verdict,
            EBPFCNI_VERDICT_ALLOWED_CONNTRACK);
  EXPECT_EQ(TraceToPod(PacketBuilder::Icmp(kPeer6, kPod6, 1).Quote(query6)).verdict,
            EBPFCNI_VERDICT_ALLOWED_CONNTRACK);
  // Packet too big about a TCP flow: path MTU discovery keeps working.
  EXPECT_EQ(TraceToPod(PacketBuilder::Icmp(kPeer6, kPod6, 2).Quote(tls6)).verdict,
            EBPFCNI_VERDICT_ALLOWED_CONNTRACK);
  // The same error about a flow that was never allowed: policy decides.
  std::vector<uint8_t> other = PacketBuilder::Udp(kPod4, kPeer4, 5001, 53).Build();
  EXPECT_EQ(TraceToPod(PacketBuilder::Icmp(kPeer4, kPod4, 3).Quote(other)).reason,
            EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  // A quote without the bytes after its IP header (no ports) relates to
  // nothing.
  EXPECT_EQ(TraceToPod(PacketBuilder::Icmp(kPeer4, kPod4, 3).Quote(query, 0).Payload(0)).verdict,
            EBPFCNI_VERDICT_DROPPED);
  // An error passes without creating an entry of its own.
  size_t entries = ConntrackEntries();
  EXPECT_EQ(ToPod(PacketBuilder::Icmp(kPeer4, kPod4, 3).Quote(query)), kTcActOk);
  EXPECT_EQ(ConntrackEntries(), entries);
}

TEST_F(PolicyProgramsTest, ClosedTcpFlowsExpireEarlyAndOpenOnesStay) {
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  auto out = [&](uint16_t sport, uint8_t flags) {
    return FromPod(PacketBuilder::Tcp(kPod4, kPeer4, sport, 80, flags));
  };
  auto in = [&](uint16_t sport, uint8_t flags) {
    return ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 80, sport, flags));
  };
  // Flow 1 closes with FIN both ways, flow 2 stays open, flow 3 is reset.
  for (uint16_t sport : {1001, 1002, 1003}) {
    ASSERT_EQ(out(sport, kTcpSyn), kTcActOk);
    ASSERT_EQ(in(sport, kTcpSyn | kTcpAck), kTcActOk);
    ASSERT_EQ(out(sport, kTcpAck), kTcActOk);
  }
  ASSERT_EQ(out(1001, kTcpFin | kTcpAck), kTcActOk);
  ASSERT_EQ(in(1001, kTcpFin | kTcpAck), kTcActOk);
  ASSERT_EQ(in(1003, kTcpRst), kTcActOk);
  std::this_thread::sleep_for(std::chrono::milliseconds(120));  // > closing lifetime (50 ms)
  EXPECT_EQ(in(1001, kTcpAck), kTcActShot) << "closed flow should have expired";
  EXPECT_EQ(in(1003, kTcpAck), kTcActShot) << "reset flow should have expired";
  EXPECT_EQ(in(1002, kTcpAck), kTcActOk) << "open flow must survive";
}

TEST_F(PolicyProgramsTest, NewSynOnAClosedTuplePassesPolicyAgain) {
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 2000, 80)), kTcActOk);
  ASSERT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 80, 2000, kTcpRst)), kTcActOk);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 2000, 80)).verdict,
            EBPFCNI_VERDICT_ALLOWED_POLICY);
  // Policy now denies: the reused tuple must not ride on the old entry.
  SetPolicy(Isolated());
  EXPECT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 2000, 80)), kTcActShot);
}

TEST_F(PolicyProgramsTest, PureSynSkipsConntrackAndIsJudgedByTodaysPolicy) {
  // A pure SYN opens a connection: it never rides on an entry, even a live
  // one, and an allowed one rewrites its tuple's entry instead of adding one.
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  const std::vector<uint8_t> syn = PacketBuilder::Tcp(kPod4, kPeer4, 2100, 80, kTcpSyn).Build();
  const std::vector<uint8_t> ack = PacketBuilder::Tcp(kPod4, kPeer4, 2100, 80, kTcpAck).Build();
  ASSERT_EQ(*RunProgram(bpf_->from_container_fd(), kIfindex, syn), kTcActOk);
  ASSERT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 80, 2100, kTcpSyn | kTcpAck)), kTcActOk);
  uint64_t by_policy = Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_POLICY));
  uint64_t by_conntrack = Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_CONNTRACK));
  // A retransmitted SYN goes to policy again; the flow keeps one entry.
  ASSERT_EQ(*RunProgram(bpf_->from_container_fd(), kIfindex, syn), kTcActOk);
  EXPECT_EQ(Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_POLICY)), by_policy + 1);
  EXPECT_EQ(Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_CONNTRACK)), by_conntrack);
  EXPECT_EQ(ConntrackEntries(), 1u);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 2100, 80, kTcpSyn)).verdict,
            EBPFCNI_VERDICT_ALLOWED_POLICY);
  EXPECT_EQ(TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 2100, 80, kTcpAck)).verdict,
            EBPFCNI_VERDICT_ALLOWED_CONNTRACK);
  // Under a policy that no longer allows the peer, the live flow's packets
  // still pass (conntrack) but a SYN on its tuple does not.
  SetPolicy(Isolated());
  EXPECT_EQ(*RunProgram(bpf_->from_container_fd(), kIfindex, ack), kTcActOk);
  EXPECT_EQ(*RunProgram(bpf_->from_container_fd(), kIfindex, syn), kTcActShot);
  EXPECT_EQ(*RunProgram(bpf_->from_container_fd(), kIfindex, ack), kTcActOk);
}

TEST_F(PolicyProgramsTest, ConntrackEntriesBelongToOneEndpoint) {
  // The interface changing hands (endpoint 10 -> 11 on the same ifindex)
  // takes the old endpoint's flows along: endpoint 11 (isolated, no rules)
  // must not receive the reply of endpoint 10's connection, and the flows do
  // not come back with endpoint 10 either.
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 3000, 80)), kTcActOk);
  ASSERT_EQ(ConntrackEntries(), 1u);
  ASSERT_TRUE(policy_->Replace(11, Isolated()).ok());
  ASSERT_TRUE(bpf_->SetEndpointForIfindex(kIfindex, 11, kPodIdentity).ok());
  EXPECT_EQ(ConntrackEntries(), 0u);
  EXPECT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 80, 3000, kTcpSyn | kTcpAck)), kTcActShot);
  ASSERT_TRUE(bpf_->SetEndpointForIfindex(kIfindex, kEndpointId, kPodIdentity).ok());
  EXPECT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 80, 3000, kTcpSyn | kTcpAck)), kTcActShot);
  // Re-opened from the allowed side, the flow works again.
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 3000, 80)), kTcActOk);
  EXPECT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 80, 3000, kTcpSyn | kTcpAck)), kTcActOk);
  // Rewriting the same owner (an identity change) keeps the flows.
  ASSERT_TRUE(bpf_->SetEndpointForIfindex(kIfindex, kEndpointId, kPodIdentity + 1).ok());
  EXPECT_EQ(ConntrackEntries(), 1u);
}

TEST_F(PolicyProgramsTest, ConntrackEntriesBelongToOneInterface) {
  // Entries are keyed by the interface the packet is on: a second real
  // interface (a veth, so test-run has a second ifindex) with the same
  // endpoint behind it must not ride on the first one's flows, which pass
  // without an endpoint lookup.
  testing::ScopedVethPair second("cti", "10.254.7.2/30");
  ASSERT_TRUE(second.ok());
  const uint32_t other_ifindex = second.host_ifindex();
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 3100, 80)), kTcActOk);
  ASSERT_TRUE(bpf_->SetEndpointForIfindex(other_ifindex, kEndpointId, kPodIdentity).ok());
  const std::vector<uint8_t> reply =
      PacketBuilder::Tcp(kPeer4, kPod4, 80, 3100, kTcpSyn | kTcpAck).Build();
  const std::vector<uint8_t> more = PacketBuilder::Tcp(kPod4, kPeer4, 3100, 80).Build();
  absl::StatusOr<int> elsewhere = RunProgram(bpf_->to_container_fd(), other_ifindex, reply);
  ASSERT_TRUE(elsewhere.ok()) << elsewhere.status();
  EXPECT_EQ(*elsewhere, kTcActShot);
  // The flow's own direction on the other interface goes to policy: allowed
  // there as a new flow, not as conntrack.
  absl::StatusOr<TraceResult> traced =
      TraceProgram(bpf_->from_container_fd(), other_ifindex, more);
  ASSERT_TRUE(traced.ok()) << traced.status();
  EXPECT_EQ(traced->verdict, EBPFCNI_VERDICT_ALLOWED_POLICY);
  EXPECT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 80, 3100, kTcpSyn | kTcpAck)), kTcActOk);
  ASSERT_TRUE(bpf_->RemoveIfindex(other_ifindex, kEndpointId).ok());
}

TEST_F(PolicyProgramsTest, EstablishedPacketsAreCountedOnTheEntrysEndpoint) {
  // The conntrack fast path counts without looking the endpoint up: the
  // entry carries the endpoint id.
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  const std::vector<uint8_t> syn = PacketBuilder::Tcp(kPod4, kPeer4, 3200, 80, kTcpSyn).Build();
  const std::vector<uint8_t> reply =
      PacketBuilder::Tcp(kPeer4, kPod4, 80, 3200, kTcpSyn | kTcpAck).Build();
  const std::vector<uint8_t> ack = PacketBuilder::Tcp(kPod4, kPeer4, 3200, 80, kTcpAck).Build();
  ASSERT_EQ(*RunProgram(bpf_->from_container_fd(), kIfindex, syn), kTcActOk);
  uint64_t conntrack_before = Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_CONNTRACK));
  ASSERT_EQ(*RunProgram(bpf_->to_container_fd(), kIfindex, reply), kTcActOk);
  ASSERT_EQ(*RunProgram(bpf_->from_container_fd(), kIfindex, ack), kTcActOk);
  absl::StatusOr<EndpointCounters> counters = bpf_->ReadCounters(kEndpointId);
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->from_pod_packets, 2u);
  EXPECT_EQ(counters->from_pod_bytes, syn.size() + ack.size());
  EXPECT_EQ(counters->to_pod_packets, 1u);
  EXPECT_EQ(counters->to_pod_bytes, reply.size());
  EXPECT_EQ(Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_CONNTRACK)),
            conntrack_before + 2);
  absl::StatusOr<std::vector<ConntrackEntry>> entries = ConntrackMap(*bpf_).List();
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 1u);
  EXPECT_EQ((*entries)[0].ifindex, kIfindex);
  EXPECT_EQ((*entries)[0].endpoint_id, kEndpointId);
  EXPECT_EQ((*entries)[0].scope, EBPFCNI_CT_SCOPE_EGRESS);
  EXPECT_EQ((*entries)[0].rule_id, 1u);
  EXPECT_EQ((*entries)[0].source_port, 3200);
}

TEST_F(PolicyProgramsTest, RemovingTheInterfaceFlushesItsFlows) {
  // What DeleteEndpoint does before the kernel may reuse the ifindex: the
  // next owner of the index inherits no flow, in either family.
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 3300, 80)), kTcActOk);
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod6, kPeer6, 3300, 80)), kTcActOk);
  ASSERT_EQ(ConntrackEntries(), 2u);
  ASSERT_TRUE(bpf_->RemoveIfindex(kIfindex, kEndpointId).ok());
  EXPECT_EQ(ConntrackEntries(), 0u);
  ASSERT_TRUE(policy_->Replace(12, Isolated()).ok());
  ASSERT_TRUE(bpf_->SetEndpointForIfindex(kIfindex, 12, kPodIdentity).ok());
  EXPECT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 80, 3300, kTcpSyn | kTcpAck)), kTcActShot);
  EXPECT_EQ(ToPod(PacketBuilder::Tcp(kPeer6, kPod6, 80, 3300, kTcpSyn | kTcpAck)), kTcActShot);
}

// ---- parsing: options, fragments, malformed ---------------------------------

TEST_F(PolicyProgramsTest, Ipv4OptionsAreSkippedToFindThePorts) {
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  for (size_t options : {4, 20, 40}) {
    EXPECT_EQ(TraceToPod(PacketBuilder::Tcp(kPeer4, kPod4, 1, 80).Ipv4Options(options)).rule_id,
              1u)
        << options;
    EXPECT_EQ(TraceToPod(PacketBuilder::Tcp(kPeer4, kPod4, 1, 81).Ipv4Options(options)).reason,
              EBPFCNI_DROP_POLICY_DEFAULT_DENY)
        << options;
  }
}

TEST_F(PolicyProgramsTest, Ipv6ExtensionHeadersAreWalked) {
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoUdp, 53, kAllow, 1)}));
  PacketBuilder packet = PacketBuilder::Udp(kPeer6, kPod6, 1, 53);
  packet.Ipv6Extension(kIpv6HopByHop).Ipv6Extension(kIpv6Routing).Ipv6Extension(kIpv6Auth)
      .Ipv6Extension(kIpv6DestOptions);
  EXPECT_EQ(TraceToPod(packet).rule_id, 1u);
  PacketBuilder too_many = PacketBuilder::Udp(kPeer6, kPod6, 1, 53);
  for (int i = 0; i < 9; ++i) too_many.Ipv6Extension(kIpv6DestOptions);
  TraceResult trace = TraceToPod(too_many);
  EXPECT_EQ(trace.reason, EBPFCNI_DROP_IPV6_EXTENSION_LIMIT);
}

TEST_F(PolicyProgramsTest, LaterFragmentsWithoutTheirFirstOnlyMatchAnyPortRules) {
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoUdp, 53, kAllow, 1)}));
  for (auto [peer, pod] : {std::pair{kPeer4, kPod4}, std::pair{kPeer6, kPod6}}) {
    // The first fragment has the ports (a trace records nothing).
    EXPECT_EQ(TraceToPod(PacketBuilder::Udp(peer, pod, 1, 53).Fragment(0, true)).rule_id, 1u);
    // Later ones do not: port "unknown" does not match a port rule.
    TraceResult later = TraceToPod(PacketBuilder::Udp(peer, pod, 1, 53).Payload(16).Fragment(185, false));
    EXPECT_EQ(later.reason, EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  }
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoUdp, 0, kAllow, 2)}));
  EXPECT_EQ(TraceToPod(PacketBuilder::Udp(kPeer4, kPod4, 1, 53).Payload(16).Fragment(185, false))
                .rule_id,
            2u);
  EXPECT_EQ(TraceToPod(PacketBuilder::Udp(kPeer6, kPod6, 1, 53).Payload(16).Fragment(185, false))
                .rule_id,
            2u);
}

TEST_F(PolicyProgramsTest, LaterFragmentsFollowTheirFirstFragment) {
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoUdp, 53, kAllow, 1),
                      Rule(kEgress, kPeerIdentity, kProtoUdp, 53, kAllow, 2)}));
  uint32_t id = 0x100;  // IPv4 keeps 16 bits of it
  for (auto [peer, pod] : {std::pair{kPeer4, kPod4}, std::pair{kPeer6, kPod6}}) {
    SCOPED_TRACE(pod.ToString());
    ++id;
    auto fragment = [&](uint16_t dport, uint16_t offset, bool more, uint32_t datagram) {
      return PacketBuilder::Udp(peer, pod, 4000, dport).Payload(64).Fragment(offset, more,
                                                                              datagram);
    };
    // The first fragment is allowed by rule 1 and records the ports.
    ASSERT_EQ(ToPod(fragment(53, 0, true, id)), kTcActOk);
    EXPECT_EQ(ToPod(fragment(53, 9, true, id)), kTcActOk);
    EXPECT_EQ(ToPod(fragment(53, 18, false, id)), kTcActOk);
    TraceResult later = TraceToPod(fragment(53, 18, false, id));
    EXPECT_EQ(later.verdict, EBPFCNI_VERDICT_ALLOWED_CONNTRACK);
    // Another datagram whose first fragment never came: no ports.
    EXPECT_EQ(ToPod(fragment(53, 18, false, id + 0x10)), kTcActShot);
    // A datagram whose first fragment was denied: its later ones too.
    ASSERT_EQ(ToPod(fragment(54, 0, true, id + 0x20)), kTcActShot);
    EXPECT_EQ(ToPod(fragment(54, 9, false, id + 0x20)), kTcActShot);
    // The record belongs to this side of this interface: the pod's own
    // egress program does not take it for a datagram with the same
    // identity going out.
    EXPECT_EQ(FromPod(PacketBuilder::Udp(pod, peer, 53, 4000).Payload(64).Fragment(9, false, id)),
              kTcActShot);
  }
  // IPv4 identifies a datagram by 16 bits: the record is keyed by them.
  ASSERT_EQ(ToPod(PacketBuilder::Udp(kPeer4, kPod4, 4001, 53).Fragment(0, true, 0x7777)), kTcActOk);
  EXPECT_EQ(ToPod(PacketBuilder::Udp(kPeer4, kPod4, 4001, 53).Fragment(9, false, 0x7777)), kTcActOk);
}

TEST_F(PolicyProgramsTest, MalformedAndTruncatedPacketsAreDroppedWithTheirReason) {
  // Not isolated: only the parser can drop these.
  std::vector<uint8_t> tcp4 = PacketBuilder::Tcp(kPeer4, kPod4, 1, 80).Build();
  std::vector<uint8_t> tcp6 = PacketBuilder::Tcp(kPeer6, kPod6, 1, 80).Build();
  struct Case {
    const char* name;
    std::vector<uint8_t> frame;
    uint32_t reason;
  };
  std::vector<Case> cases;
  // Frames cut inside the base IPv4/IPv6 header are refused by
  // BPF_PROG_TEST_RUN itself (EINVAL), so those two reasons are exercised
  // with real frames on a veth in datapath_service_test instead.
  {
    std::vector<uint8_t> f = tcp4;
    f[14] = 0x44;  // IHL 4 < 5
    cases.push_back({"ihl below 5", f, EBPFCNI_DROP_MALFORMED_L3});
  }
  {
    std::vector<uint8_t> f = tcp4;
    f[14] = 0x65;  // version 6 in an IPv4 ethertype
    cases.push_back({"wrong version", f, EBPFCNI_DROP_MALFORMED_L3});
  }
  {
    std::vector<uint8_t> f = tcp4;
    f[16] = 0;
    f[17] = 10;  // total length < header length
    cases.push_back({"total length too small", f, EBPFCNI_DROP_MALFORMED_L3});
  }
  {
    std::vector<uint8_t> f = PacketBuilder::Tcp(kPeer4, kPod4, 1, 80).Ipv4Options(40).Build();
    f.resize(14 + 40);  // options cut off
    cases.push_back({"options cut", f, EBPFCNI_DROP_TRUNCATED_L3});
  }
  {
    std::vector<uint8_t> f = tcp4;
    f[16] = 0;
    f[17] = 20 + 10;  // claims a 10-byte TCP header and the frame agrees
    f.resize(14 + 30);
    cases.push_back({"tcp header cut", f, EBPFCNI_DROP_TRUNCATED_L4});
  }
  {
    std::vector<uint8_t> f = tcp6;
    f[14] = 0x40;  // version 4 in an IPv6 ethertype
    cases.push_back({"ipv6 wrong version", f, EBPFCNI_DROP_MALFORMED_L3});
  }
  {
    std::vector<uint8_t> f = tcp6;
    f.resize(14 + 40 + 8);  // payload length says 20, frame has 8
    cases.push_back({"ipv6 payload cut", f, EBPFCNI_DROP_TRUNCATED_L3});
  }
  {
    std::vector<uint8_t> f = tcp6;
    f[18] = 0;
    f[19] = 8;  // consistent payload length, but TCP needs 20
    f.resize(14 + 40 + 8);
    cases.push_back({"ipv6 tcp cut", f, EBPFCNI_DROP_TRUNCATED_L4});
  }
  {
    std::vector<uint8_t> f = tcp4;
    f[12] = 0x88;
    f[13] = 0xcc;  // LLDP
    cases.push_back({"other ethertype", f, EBPFCNI_DROP_UNSUPPORTED_L3});
  }
  {
    std::vector<uint8_t> f = tcp4;
    f[12] = 0x81;
    f[13] = 0x00;  // VLAN tag
    cases.push_back({"vlan", f, EBPFCNI_DROP_UNSUPPORTED_L3});
  }
  for (const Case& c : cases) {
    TraceResult trace = Trace(bpf_->to_container_fd(), c.frame);
    EXPECT_EQ(trace.verdict, EBPFCNI_VERDICT_DROPPED) << c.name;
    EXPECT_EQ(trace.reason, c.reason) << c.name;
    absl::StatusOr<int> action = RunProgram(bpf_->to_container_fd(), kIfindex, c.frame);
    ASSERT_TRUE(action.ok()) << action.status();
    EXPECT_EQ(*action, kTcActShot) << c.name;
  }
}

// ---- events, counters, tracing ----------------------------------------------

TEST_F(PolicyProgramsTest, DropEventsCarryTupleIdentitiesReasonAndRule) {
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoTcp, 22, kDeny, 44)}));
  ASSERT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 40000, 22)), kTcActShot);
  ASSERT_EQ(FromPod(PacketBuilder::Udp(kPod6, kPeer6, 5353, 53)), kTcActShot);
  std::vector<Event> events = DrainEvents();
  ASSERT_EQ(events.size(), 2u);
  const ebpfcni_event& deny = events[0].raw;
  EXPECT_EQ(deny.type, EBPFCNI_EVENT_DROP);
  EXPECT_EQ(deny.direction, EBPFCNI_DIR_TO_POD);
  EXPECT_EQ(deny.reason, EBPFCNI_DROP_POLICY_DENY);
  EXPECT_EQ(deny.rule_id, 44u);
  EXPECT_EQ(deny.endpoint_id, kEndpointId);
  EXPECT_EQ(deny.src_identity, kPeerIdentity);
  EXPECT_EQ(deny.dst_identity, kPodIdentity);
  EXPECT_EQ(deny.family, EBPFCNI_FAMILY_IPV4);
  EXPECT_EQ(deny.protocol, kProtoTcp);
  EXPECT_EQ(ntohs(deny.sport), 40000);
  EXPECT_EQ(ntohs(deny.dport), 22);
  EXPECT_EQ(IpAddress::FromV4Bytes(deny.saddr), kPeer4);
  EXPECT_EQ(IpAddress::FromV4Bytes(deny.daddr), kPod4);
  const ebpfcni_event& default_deny = events[1].raw;
  EXPECT_EQ(default_deny.direction, EBPFCNI_DIR_FROM_POD);
  EXPECT_EQ(default_deny.reason, EBPFCNI_DROP_POLICY_DEFAULT_DENY);
  EXPECT_EQ(default_deny.rule_id, 0u);
  EXPECT_EQ(default_deny.src_identity, kPodIdentity);
  EXPECT_EQ(default_deny.dst_identity, kPeerIdentity);
  EXPECT_EQ(IpAddress::FromV6Bytes(default_deny.daddr), kPeer6);
}

TEST_F(PolicyProgramsTest, VerdictEventsOnlyWhenEnabledAndOnlyForNewFlows) {
  EndpointPolicy policy = Isolated({Rule(kEgress, 0, kProtoTcp, 80, kAllow, 5)});
  SetPolicy(policy);
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 1, 80)), kTcActOk);
  EXPECT_TRUE(DrainEvents().empty());
  policy.verdict_events = true;
  SetPolicy(policy);
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 2, 80)), kTcActOk);
  ASSERT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 2, 80, kTcpAck)), kTcActOk);  // CT hit
  std::vector<Event> events = DrainEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].raw.type, EBPFCNI_EVENT_POLICY_VERDICT);
  EXPECT_EQ(events[0].raw.rule_id, 5u);
  EXPECT_EQ(ntohs(events[0].raw.sport), 2);
}

TEST_F(PolicyProgramsTest, EventsAreRateLimitedPerCpu) {
  SetPolicy(Isolated());
  std::vector<uint8_t> frame = PacketBuilder::Tcp(kPeer4, kPod4, 1, 80).Build();
  // 3000 drops in one test run (on one CPU) within well under a second.
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .repeat = 3000);
  __sk_buff context{};
  context.ifindex = kIfindex;
  opts.ctx_in = &context;
  opts.ctx_size_in = sizeof(context);
  ASSERT_EQ(bpf_prog_test_run_opts(bpf_->to_container_fd(), &opts), 0);
  EXPECT_EQ(opts.retval, static_cast<uint32_t>(kTcActShot));
  size_t delivered = DrainEvents().size();
  uint64_t limited = Metric(EBPFCNI_METRIC_EVENTS_RATE_LIMITED);
  EXPECT_GE(delivered, 900u);
  EXPECT_LE(delivered, 1100u);  // one second's burst, plus refill while running
  EXPECT_EQ(delivered + limited, 3000u);
}

TEST_F(PolicyProgramsTest, PerEntryCountersCountHitsOfEachRule) {
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoTcp, 80, kAllow, 1),
                      Rule(kIngress, 0, 0, 0, kDeny, 2)}));
  std::vector<uint8_t> allowed = PacketBuilder::Tcp(kPeer4, kPod4, 1, 80).Build();
  for (uint16_t sport = 1; sport <= 3; ++sport) {
    ASSERT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, sport, 80)), kTcActOk);
  }
  ASSERT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 1, 80, kTcpAck)), kTcActOk);  // CT: no hit
  ASSERT_EQ(ToPod(PacketBuilder::Udp(kOther4, kPod4, 1, 80)), kTcActShot);
  absl::StatusOr<std::vector<PolicyEntryCounters>> counters = policy_->ReadCounters(kEndpointId);
  ASSERT_TRUE(counters.ok()) << counters.status();
  ASSERT_EQ(counters->size(), 2u);
  EXPECT_EQ((*counters)[0].rule.rule_id, 1u);
  EXPECT_EQ((*counters)[0].packets, 3u);
  EXPECT_EQ((*counters)[0].bytes, 3 * allowed.size());
  EXPECT_EQ((*counters)[1].packets, 1u);
  // Replacing the policy keeps counters of entries that stay, drops others.
  SetPolicy(Isolated({Rule(kIngress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  counters = policy_->ReadCounters(kEndpointId);
  ASSERT_TRUE(counters.ok());
  ASSERT_EQ(counters->size(), 1u);
  EXPECT_EQ((*counters)[0].packets, 3u);
}

TEST_F(PolicyProgramsTest, TracingChangesNoState) {
  SetPolicy(Isolated({Rule(kEgress, kPeerIdentity, kProtoTcp, 80, kAllow, 1)}));
  uint64_t allowed_before = Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_POLICY));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 1, 80)).verdict,
              EBPFCNI_VERDICT_ALLOWED_POLICY);
    EXPECT_EQ(TraceFromPod(PacketBuilder::Tcp(kPod4, kPeer4, 1, 81)).verdict,
              EBPFCNI_VERDICT_DROPPED);
  }
  EXPECT_EQ(ConntrackEntries(), 0u);
  EXPECT_EQ(Metric(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_POLICY)), allowed_before);
  EXPECT_TRUE(DrainEvents().empty());
  absl::StatusOr<std::vector<PolicyEntryCounters>> counters = policy_->ReadCounters(kEndpointId);
  ASSERT_TRUE(counters.ok());
  EXPECT_EQ((*counters)[0].packets, 0u);
  // The real run does create the entry.
  EXPECT_EQ(FromPod(PacketBuilder::Tcp(kPod4, kPeer4, 1, 80)), kTcActOk);
  EXPECT_EQ(ConntrackEntries(), 1u);
}

// ---- ipcache: exact addresses in front of the prefix trie -------------------

TEST_F(PolicyProgramsTest, ExactAddressesWinOverPrefixesInTheProgramsAndTheService) {
  const IpAddress inside = Ip("10.9.0.5"), neighbour = Ip("10.9.0.6");
  ASSERT_TRUE(ipcache_->Upsert(*IpPrefix::Parse("10.9.0.0/16"), 4100).ok());
  ASSERT_TRUE(ipcache_->Upsert(IpPrefix(inside, 32), 4200).ok());
  ASSERT_TRUE(ipcache_->Upsert(*IpPrefix::Parse("fd09::/64"), 4300).ok());
  ASSERT_TRUE(ipcache_->Upsert(IpPrefix(Ip("fd09::5"), 128), 4400).ok());
  SetPolicy(Isolated());
  auto peer_of = [&](const IpAddress& source) {
    return TraceToPod(PacketBuilder::Tcp(source, source.is_v4() ? kPod4 : kPod6, 1, 80))
        .peer_identity;
  };
  EXPECT_EQ(peer_of(inside), 4200u);
  EXPECT_EQ(peer_of(neighbour), 4100u);
  EXPECT_EQ(peer_of(Ip("fd09::5")), 4400u);
  EXPECT_EQ(peer_of(Ip("fd09::6")), 4300u);
  EXPECT_EQ(peer_of(Ip("10.10.0.1")), uint32_t{EBPFCNI_IDENTITY_WORLD_IPV4});
  EXPECT_EQ(peer_of(Ip("fd0a::1")), uint32_t{EBPFCNI_IDENTITY_WORLD_IPV6});
  EXPECT_EQ(*ipcache_->Lookup(inside), 4200u);
  EXPECT_EQ(*ipcache_->Lookup(neighbour), 4100u);
  absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> listed = ipcache_->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  auto has = [&](const IpPrefix& prefix, uint32_t identity) {
    return std::find(listed->begin(), listed->end(), std::pair{prefix, identity}) != listed->end();
  };
  EXPECT_TRUE(has(IpPrefix(inside, 32), 4200));
  EXPECT_TRUE(has(*IpPrefix::Parse("10.9.0.0/16"), 4100));
  EXPECT_TRUE(has(IpPrefix(Ip("fd09::5"), 128), 4400));

  ASSERT_TRUE(*ipcache_->Delete(IpPrefix(inside, 32)));
  EXPECT_FALSE(*ipcache_->Delete(IpPrefix(inside, 32)));
  EXPECT_EQ(peer_of(inside), 4100u) << "the covering prefix decides again";
  EXPECT_EQ(*ipcache_->Lookup(inside), 4100u);
}

TEST_F(PolicyProgramsTest, WholeAddressLeftInTheTrieByAnEarlierVersionIsKeptCurrentAndDeleted) {
  // Earlier versions kept /32s in the trie, which the programs they run
  // until an upgrade swaps their filters still read.
  const IpAddress address = Ip("10.9.1.7");
  ebpfcni_ipcache_key key{};
  key.prefixlen = EBPFCNI_IPCACHE_PREFIX_BASE + 32;
  key.family = EBPFCNI_FAMILY_IPV4;
  std::memcpy(key.addr, address.data(), 4);
  ebpfcni_ipcache_value value{};
  value.identity = 4500;
  ASSERT_EQ(bpf_map_update_elem(bpf_->ipcache_fd(), &key, &value, BPF_ANY), 0);

  ASSERT_TRUE(ipcache_->Upsert(IpPrefix(address, 32), 4600).ok());
  ebpfcni_ipcache_value in_trie{};
  ASSERT_EQ(bpf_map_lookup_elem(bpf_->ipcache_fd(), &key, &in_trie), 0);
  EXPECT_EQ(in_trie.identity, 4600u);
  // A new address gets no trie copy.
  ASSERT_TRUE(ipcache_->Upsert(IpPrefix(Ip("10.9.1.8"), 32), 4700).ok());
  ebpfcni_ipcache_key other = key;
  other.addr[3] = 8;
  EXPECT_NE(bpf_map_lookup_elem(bpf_->ipcache_fd(), &other, &in_trie), 0);

  ASSERT_TRUE(*ipcache_->Delete(IpPrefix(address, 32)));
  EXPECT_NE(bpf_map_lookup_elem(bpf_->ipcache_fd(), &key, &in_trie), 0) << "trie copy left";
  EXPECT_EQ(*ipcache_->Lookup(address), uint32_t{EBPFCNI_IDENTITY_WORLD_IPV4});
  EXPECT_EQ(*ipcache_->Lookup(Ip("fd0a::1")), uint32_t{EBPFCNI_IDENTITY_WORLD_IPV6});
}

TEST_F(PolicyProgramsTest, WholeIpv4AddressesLiveInTheirOwnMap) {
  const IpAddress address = Ip("10.9.2.7");
  ASSERT_TRUE(ipcache_->Upsert(IpPrefix(address, 32), 4800).ok());
  uint32_t key4;
  std::memcpy(&key4, address.data(), 4);
  ebpfcni_ipcache_value value{};
  ASSERT_EQ(bpf_map_lookup_elem(bpf_->ipcache4_fd(), &key4, &value), 0);
  EXPECT_EQ(value.identity, 4800u);
  // Not in the 20-byte-key map (that one is IPv6's now).
  ebpfcni_ipcache_exact_key exact{};
  exact.family = EBPFCNI_FAMILY_IPV4;
  std::memcpy(exact.addr, address.data(), 4);
  EXPECT_NE(bpf_map_lookup_elem(bpf_->ipcache_exact_fd(), &exact, &value), 0);
  SetPolicy(Isolated());
  EXPECT_EQ(TraceToPod(PacketBuilder::Tcp(address, kPod4, 1, 80)).peer_identity, 4800u);
}

// The version before kept whole IPv4 addresses in ipcache_exact. A start
// over its maps copies them to ipcache4 before the new programs can run;
// the copies it leaves (its programs still run until swapped) are kept
// current and go with the address.
TEST(IpCacheUpgradeTest, Ipv4AddressesOfTheVersionBeforeAreCopiedKeptCurrentAndDeleted) {
  testing::ScopedBpfDir pins("ipcache4");
  const IpAddress address = Ip("10.9.3.7");
  ebpfcni_ipcache_exact_key exact{};
  exact.family = EBPFCNI_FAMILY_IPV4;
  std::memcpy(exact.addr, address.data(), 4);
  ebpfcni_ipcache_value value{};
  {
    absl::StatusOr<std::unique_ptr<BpfObjects>> earlier = BpfObjects::Load(pins.path());
    ASSERT_TRUE(earlier.ok()) << earlier.status();
    value.identity = 4900;
    ASSERT_EQ(bpf_map_update_elem((*earlier)->ipcache_exact_fd(), &exact, &value, BPF_ANY), 0);
  }
  absl::StatusOr<std::unique_ptr<BpfObjects>> loaded = BpfObjects::Load(pins.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  BpfObjects& bpf = **loaded;
  IpCacheMap ipcache(bpf);
  uint32_t key4;
  std::memcpy(&key4, address.data(), 4);
  ASSERT_EQ(bpf_map_lookup_elem(bpf.ipcache4_fd(), &key4, &value), 0);
  EXPECT_EQ(value.identity, 4900u);
  EXPECT_EQ(*ipcache.Lookup(address), 4900u);

  ASSERT_TRUE(ipcache.Upsert(IpPrefix(address, 32), 5000).ok());
  ASSERT_EQ(bpf_map_lookup_elem(bpf.ipcache_exact_fd(), &exact, &value), 0);
  EXPECT_EQ(value.identity, 5000u) << "the earlier programs' copy follows";

  ASSERT_TRUE(*ipcache.Delete(IpPrefix(address, 32)));
  EXPECT_NE(bpf_map_lookup_elem(bpf.ipcache_exact_fd(), &exact, &value), 0) << "copy left";
  EXPECT_NE(bpf_map_lookup_elem(bpf.ipcache4_fd(), &key4, &value), 0);
  EXPECT_EQ(*ipcache.Lookup(address), uint32_t{EBPFCNI_IDENTITY_WORLD_IPV4});
}

TEST_F(PolicyProgramsTest, UnknownInterfacePassesUnjudged) {
  ASSERT_TRUE(bpf_->RemoveIfindex(kIfindex, kEndpointId).ok());
  SetPolicy(Isolated());
  EXPECT_EQ(TraceToPod(PacketBuilder::Tcp(kPeer4, kPod4, 1, 80)).verdict,
            EBPFCNI_VERDICT_NOT_AN_ENDPOINT);
  EXPECT_EQ(ToPod(PacketBuilder::Tcp(kPeer4, kPod4, 1, 80)), kTcActOk);
}

// ---- randomized ---------------------------------------------------------------

// Independent of the BPF parser: is this frame ARP, IPv6 neighbour
// discovery or multicast listener discovery from a link-local or unspecified
// source, the only things an isolated endpoint with no rules may pass? (They
// are legal behind extension headers, so when the frame has them, we accept
// a pass only if the walk reaches such an ICMPv6 message.)
bool IsArpOrNeighbourDiscovery(const std::vector<uint8_t>& f) {
  if (f.size() < 14) return false;
  uint16_t ethertype = (f[12] << 8) | f[13];
  if (ethertype == 0x0806) return true;
  if (ethertype != 0x86DD || f.size() < 14 + 40) return false;
  size_t offset = 14 + 40;
  uint8_t next = f[14 + 6];
  for (int i = 0; i < 8; ++i) {
    if (next == 0 || next == 43 || next == 60 || next == 51) {
      if (f.size() < offset + 2) return false;
      size_t length = next == 51 ? (f[offset + 1] + 2) * 4 : (f[offset + 1] + 1) * 8;
      next = f[offset];
      offset += length;
    } else if (next == 44) {
      if (f.size() < offset + 8) return false;
      if (((f[offset + 2] << 8 | f[offset + 3]) & 0xfff8) != 0) return false;
      next = f[offset];
      offset += 8;
    } else {
      break;
    }
  }
  if (next != 58 || f.size() < offset + 8) return false;
  uint8_t type = f[offset];
  if (type >= 133 && type <= 137) return true;
  bool mld = type == 130 || type == 131 || type == 132 || type == 143;
  const uint8_t* source = &f[14 + 8];
  bool link_local = source[0] == 0xfe && (source[1] & 0xc0) == 0x80;
  bool unspecified = std::all_of(source, source + 16, [](uint8_t b) { return b == 0; });
  return mld && (link_local || unspecified);
}

TEST_F(PolicyProgramsTest, RandomAndTruncatedPacketsNeverPassAnIsolatedEndpointWithoutRules) {
  SetPolicy(Isolated());
  std::mt19937 random(12345);
  auto byte = [&] { return static_cast<uint8_t>(random() & 0xff); };
  const IpAddress addresses[] = {kPod4, kPeer4, kWorld4, kPod6, kPeer6};
  int passed = 0;
  int refused = 0;
  constexpr int kPackets = 5000;
  for (int i = 0; i < kPackets; ++i) {
    std::vector<uint8_t> frame;
    int kind = random() % 4;
    if (kind == 0) {
      // Pure noise with a plausible ethertype.
      frame.resize(14 + random() % 120);
      for (uint8_t& b : frame) b = byte();
      const uint16_t types[] = {0x0800, 0x86DD, 0x0806, 0x8100};
      uint16_t type = types[random() % 4];
      frame[12] = type >> 8;
      frame[13] = type & 0xff;
    } else {
      // A valid packet, then mutated and/or truncated.
      const IpAddress& a = addresses[random() % 5];
      const IpAddress* b = &addresses[random() % 5];
      while (b->is_v4() != a.is_v4()) b = &addresses[random() % 5];
      uint8_t protocols[] = {kProtoTcp, kProtoUdp, kProtoSctp, 1, 47};
      uint8_t protocol = protocols[random() % 5];
      PacketBuilder packet = protocol == 1 ? PacketBuilder::Icmp(a, *b, byte(), 1)
                             : protocol == 47 ? PacketBuilder::Protocol(a, *b, 47)
                             : protocol == kProtoTcp ? PacketBuilder::Tcp(a, *b, 1, 80, byte())
                             : protocol == kProtoUdp ? PacketBuilder::Udp(a, *b, 1, 80)
                                                     : PacketBuilder::Sctp(a, *b, 1, 80);
      if (a.is_v4() && random() % 3 == 0) packet.Ipv4Options(4 * (random() % 11));
      if (!a.is_v4()) {
        for (int e = random() % 4; e > 0; --e) {
          const uint8_t ext[] = {kIpv6HopByHop, kIpv6Routing, kIpv6DestOptions, kIpv6Auth};
          packet.Ipv6Extension(ext[random() % 4]);
        }
      }
      if (random() % 4 == 0) packet.Fragment(random() % 3, random() % 2);
      packet.Payload(random() % 64);
      frame = packet.Build();
      if (kind == 2) {
        for (int m = 1 + random() % 4; m > 0; --m) frame[14 + random() % (frame.size() - 14)] = byte();
      }
      if (kind == 3) frame.resize(14 + random() % (frame.size() - 13));
    }
    for (int fd : {bpf_->from_container_fd(), bpf_->to_container_fd()}) {
      absl::StatusOr<int> action = RunProgram(fd, kIfindex, frame);
      if (!action.ok()) {
        // BPF_PROG_TEST_RUN refuses frames cut inside the base IP header;
        // they never reach the program.
        ++refused;
        continue;
      }
      if (*action == kTcActOk) {
        ++passed;
        ASSERT_TRUE(IsArpOrNeighbourDiscovery(frame))
            << "packet " << i << " of kind " << kind << " passed an isolated endpoint";
      } else {
        ASSERT_EQ(*action, kTcActShot);
      }
    }
  }
  // ARP noise makes a few pass; if none did, the check above proved nothing.
  EXPECT_GT(passed, 0);
  EXPECT_LT(refused, kPackets / 2) << "most packets must actually reach the programs";
  EXPECT_EQ(ConntrackEntries(), 0u);
}

// ---- atomic replace -----------------------------------------------------------

TEST_F(PolicyProgramsTest, PolicySwapIsAtomicUnderContinuousTraffic) {
  // Policy A allows port 1000 (rule 1) and denies the rest with rule 100;
  // policy B allows port 2000 (rule 2) and denies the rest with rule 200.
  // Every probe must be explained entirely by A or entirely by B: e.g. port
  // 1000 denied by rule 100, or by default deny, is a half-swapped policy.
  EndpointPolicy a = Isolated({Rule(kIngress, kPeerIdentity, kProtoTcp, 1000, kAllow, 1),
                               Rule(kIngress, 0, 0, 0, kDeny, 100)});
  EndpointPolicy b = Isolated({Rule(kIngress, kPeerIdentity, kProtoTcp, 2000, kAllow, 2),
                               Rule(kIngress, 0, 0, 0, kDeny, 200)});
  // Make the swap as wide as it gets: lots of unrelated entries.
  for (uint32_t i = 0; i < 2000; ++i) {
    a.rules.push_back(Rule(kIngress, 10000 + i, kProtoUdp, 1, kAllow, 1000 + i));
    b.rules.push_back(Rule(kIngress, 20000 + i, kProtoUdp, 1, kAllow, 5000 + i));
  }
  SetPolicy(a);
  const std::vector<uint8_t> probe_x = PacketBuilder::Tcp(kPeer4, kPod4, 5, 1000).Build();
  const std::vector<uint8_t> probe_y = PacketBuilder::Tcp(kPeer4, kPod4, 5, 2000).Build();
  std::atomic<bool> stop{false};
  std::atomic<int> inconsistent{0};
  std::atomic<int> seen_a{0}, seen_b{0};
  auto probe = [&] {
    for (int i = 0; i < 200000 && !stop.load(); ++i) {
      absl::StatusOr<TraceResult> x = TraceProgram(bpf_->to_container_fd(), kIfindex, probe_x);
      absl::StatusOr<TraceResult> y = TraceProgram(bpf_->to_container_fd(), kIfindex, probe_y);
      if (!x.ok() || !y.ok()) {
        ++inconsistent;
        continue;
      }
      bool x_is_a = x->verdict == EBPFCNI_VERDICT_ALLOWED_POLICY && x->rule_id == 1;
      bool x_is_b = x->reason == EBPFCNI_DROP_POLICY_DENY && x->rule_id == 200;
      bool y_is_a = y->reason == EBPFCNI_DROP_POLICY_DENY && y->rule_id == 100;
      bool y_is_b = y->verdict == EBPFCNI_VERDICT_ALLOWED_POLICY && y->rule_id == 2;
      if (!(x_is_a || x_is_b) || !(y_is_a || y_is_b)) ++inconsistent;
      if (x_is_a) ++seen_a;
      if (x_is_b) ++seen_b;
    }
  };
  std::thread first(probe), second(probe);
  for (int swap = 0; swap < 200; ++swap) {
    ASSERT_TRUE(policy_->Replace(kEndpointId, swap % 2 == 0 ? b : a).ok());
  }
  stop = true;
  first.join();
  second.join();
  EXPECT_EQ(inconsistent.load(), 0);
  EXPECT_GT(seen_a.load(), 0);
  EXPECT_GT(seen_b.load(), 0);
}

}  // namespace
}  // namespace ebpfcni::datapath
