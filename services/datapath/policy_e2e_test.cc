// End-to-end policy tests against the real kernel and the real daemon: two
// veth "pods" routed through a test-owned node namespace in which
// ebpf-cni-datapath runs, endpoints created over gRPC with identities and
// policies, and real TCP, UDP and ICMP between the pods, over IPv4 and IPv6
// (the pods are dual-stack, as the CNI makes them). Ends with the restart
// test: continuous allowed and denied traffic of both families while the
// daemon is killed -9 and restarted ten times.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/grpc/channel.h"
#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "services/datapath/testing/kernel_fixtures.h"
#include "services/datapath/testing/pod_network.h"

namespace ebpfcni::datapath {
namespace {

namespace v1 = ::ebpfcni::datapath::v1;
using namespace std::chrono_literals;
using testing::ScopedBpfDir;
using testing::ScopedTempDir;
using testing::ScopedTwoPodNode;
using testing::NetnsProcess;
using testing::NetnsSocket;

constexpr uint32_t kIdentityA = 1001;
constexpr uint32_t kIdentityB = 1002;
constexpr uint16_t kAllowedTcpPort = 8080;
constexpr uint16_t kUnlistedTcpPort = 9090;  // no rule: default deny
constexpr uint16_t kDeniedTcpPort = 22;      // deny rule 66
constexpr uint16_t kAllowedUdpPort = 5353;
constexpr uint16_t kUnlistedUdpPort = 5354;

// IPv6 of the two pods, routed like the CNI routes them: a /128 on the pod's
// eth0, the gateway's /128 (no DAD) on the host side of every pod's veth, a
// /128 route per pod in the node namespace.
constexpr char kGateway6[] = "fd00:252::1";
constexpr char kPodA6[] = "fd00:252::2";
constexpr char kPodB6[] = "fd00:252::3";

v1::PolicyRule Rule(v1::PolicyDirection direction, uint32_t peer, uint32_t protocol,
                    uint32_t port, v1::PolicyAction action, uint32_t rule_id) {
  v1::PolicyRule rule;
  rule.set_direction(direction);
  rule.set_peer_identity(peer);
  rule.set_protocol(protocol);
  rule.set_port(port);
  rule.set_action(action);
  rule.set_rule_id(rule_id);
  return rule;
}

// B accepts from A: TCP 8080, UDP 5353, ICMP and ICMPv6 echo (the "port" of
// ICMP is the type: 8 and 128); TCP 22 explicitly denied. The rules name
// identities, not families: the TCP and UDP ones serve both.
v1::EndpointPolicy PolicyOfB() {
  v1::EndpointPolicy policy;
  policy.set_ingress_isolated(true);
  using v1::POLICY_DIRECTION_INGRESS;
  *policy.add_rules() = Rule(POLICY_DIRECTION_INGRESS, kIdentityA, 6, kAllowedTcpPort,
                             v1::POLICY_ACTION_ALLOW, 1);
  *policy.add_rules() = Rule(POLICY_DIRECTION_INGRESS, kIdentityA, 17, kAllowedUdpPort,
                             v1::POLICY_ACTION_ALLOW, 2);
  *policy.add_rules() =
      Rule(POLICY_DIRECTION_INGRESS, kIdentityA, 1, 8, v1::POLICY_ACTION_ALLOW, 3);
  *policy.add_rules() =
      Rule(POLICY_DIRECTION_INGRESS, kIdentityA, 58, 128, v1::POLICY_ACTION_ALLOW, 4);
  *policy.add_rules() = Rule(POLICY_DIRECTION_INGRESS, kIdentityA, 6, kDeniedTcpPort,
                             v1::POLICY_ACTION_DENY, 66);
  return policy;
}

// A accepts nothing new from outside: replies must come through conntrack.
v1::EndpointPolicy PolicyOfA() {
  v1::EndpointPolicy policy;
  policy.set_ingress_isolated(true);
  return policy;
}

// Echoes every byte on every accepted connection until stopped.
class EchoServer {
 public:
  explicit EchoServer(NetnsSocket listener) : listener_(std::move(listener)) {
    acceptor_ = std::thread([this] {
      while (!stop_) {
        absl::StatusOr<NetnsSocket> connection = testing::Accept(listener_, 100ms);
        if (!connection.ok()) continue;
        std::lock_guard<std::mutex> lock(mutex_);
        if (active_ >= 200 || workers_.size() >= 20000) continue;  // bounded
        ++active_;
        workers_.emplace_back([this, c = std::make_shared<NetnsSocket>(*std::move(connection))] {
          struct Done {
            std::atomic<int>& active;
            ~Done() { --active; }
          } done{active_};
          while (!stop_) {
            absl::StatusOr<std::string> data = testing::ReceiveExactly(*c, 1, 100ms);
            if (!data.ok()) {
              if (absl::IsDeadlineExceeded(data.status())) continue;
              return;
            }
            if (!testing::SendAll(*c, *data).ok()) return;
          }
        });
      }
    });
  }
  ~EchoServer() {
    stop_ = true;
    acceptor_.join();
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::thread& worker : workers_) worker.join();
  }

 private:
  NetnsSocket listener_;
  std::atomic<bool> stop_{false};
  std::atomic<int> active_{0};
  std::mutex mutex_;
  std::vector<std::thread> workers_;
  std::thread acceptor_;
};

// Sends `message` and expects it echoed.
absl::Status Exchange(const NetnsSocket& socket, const std::string& message) {
  if (absl::Status status = testing::SendAll(socket, message); !status.ok()) return status;
  absl::StatusOr<std::string> echoed = testing::ReceiveExactly(socket, message.size(), 2s);
  if (!echoed.ok()) return echoed.status();
  if (*echoed != message) return absl::DataLossError("echo differs");
  return absl::OkStatus();
}

class PolicyEndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(node_.ok()) << "could not build the test node network";
    ASSERT_TRUE(AddIpv6(node_.a(), kPodA6)) << "could not give pod a its IPv6 address";
    ASSERT_TRUE(AddIpv6(node_.b(), kPodB6)) << "could not give pod b its IPv6 address";
    StartDaemon();
    ASSERT_NE(stub_, nullptr);
  }

  // The CNI's IPv6 routing for a pod, in the node namespace of the fixture
  // (whose sysctls are its own: forwarding is switched on there only). The
  // fixture's veths have no automatic link-local addresses, which the CNI's
  // have: the node solicits the neighbour of a forwarded packet from its
  // link-local address and sends no solicitation without one.
  bool AddIpv6(const testing::TestPod& pod, const std::string& ip6) {
    const std::string node = node_.node_netns_path();
    const std::string n = "ip -n " + node.substr(node.rfind('/') + 1) + " ";
    const std::string p = "ip -n " + pod.netns + " ";
    return testing::RunCommand("nsenter --net=" + node + " sysctl -qw net.ipv6.conf.all.forwarding=1") == 0 &&
           testing::RunCommand(n + "addr add fe80::1/64 dev " + pod.host_ifname + " nodad") == 0 &&
           testing::RunCommand(p + "addr add fe80::2/64 dev eth0 nodad") == 0 &&
           testing::RunCommand(n + "addr add " + kGateway6 + "/128 dev " + pod.host_ifname + " nodad") == 0 &&
           testing::RunCommand(n + "-6 route add " + ip6 + "/128 dev " + pod.host_ifname) == 0 &&
           testing::RunCommand(p + "addr add " + ip6 + "/128 dev eth0 nodad") == 0 &&
           testing::RunCommand(p + "-6 route add " + kGateway6 + "/128 dev eth0") == 0 &&
           testing::RunCommand(p + "-6 route add default via " + kGateway6 + " dev eth0") == 0;
  }

  const std::string& Ipv6Of(const testing::TestPod& pod) const {
    static const std::string a = kPodA6, b = kPodB6;
    return &pod == &node_.a() ? a : b;
  }

  void StartDaemon() {
    daemon_.reset();
    daemon_ = std::make_unique<NetnsProcess>(
        node_.node_netns_path(),
        std::vector<std::string>{EBPFCNI_DATAPATH_BINARY, "--bpf_dir=" + bpf_dir_.path(),
                                 "--state_dir=" + state_dir_.path(), "--socket=" + socket_,
                                 "--log_level=warn"});
    ASSERT_TRUE(daemon_->started());
    for (int i = 0; i < 200; ++i) {  // up to 10 s
      // A fresh channel per attempt: a channel that failed to connect backs
      // off for seconds before trying again.
      stub_ = v1::DatapathService::NewStub(MakeChannel(socket_));
      grpc::ClientContext context;
      SetDeadline(context, 500ms);
      v1::ListEndpointsResponse response;
      if (stub_->ListEndpoints(&context, v1::ListEndpointsRequest(), &response).ok()) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "the datapath daemon did not come up";
  }

  v1::EndpointKey Key(const std::string& container) {
    v1::EndpointKey key;
    key.set_container_id(container);
    key.set_interface_name("eth0");
    return key;
  }

  grpc::Status CreateEndpoint(const std::string& container, const testing::TestPod& pod,
                              uint32_t identity, const std::optional<v1::EndpointPolicy>& policy,
                              v1::Endpoint* endpoint = nullptr) {
    v1::CreateEndpointRequest request;
    *request.mutable_key() = Key(container);
    request.set_host_ifindex(pod.host_ifindex);
    request.set_host_interface_name(pod.host_ifname);
    request.set_netns_path(pod.netns_path);
    request.add_addresses(pod.ip);
    request.add_addresses(Ipv6Of(pod));
    request.set_identity(identity);
    if (policy.has_value()) *request.mutable_policy() = *policy;
    grpc::ClientContext context;
    SetDeadline(context, 10s);
    v1::CreateEndpointResponse response;
    grpc::Status status = stub_->CreateEndpoint(&context, request, &response);
    if (endpoint != nullptr) *endpoint = response.endpoint();
    return status;
  }

  void CreateBothPods() {
    grpc::Status a = CreateEndpoint("ctr-a", node_.a(), kIdentityA, PolicyOfA());
    ASSERT_TRUE(a.ok()) << a.error_message();
    grpc::Status b = CreateEndpoint("ctr-b", node_.b(), kIdentityB, PolicyOfB());
    ASSERT_TRUE(b.ok()) << b.error_message();
  }

  grpc::Status Trace(const std::string& source, const std::string& destination,
                     uint32_t protocol, uint32_t source_port, uint32_t destination_port,
                     v1::TraceResponse* response, uint32_t tcp_flags = 0) {
    v1::TraceRequest request;
    request.set_source_ip(source);
    request.set_destination_ip(destination);
    request.set_protocol(protocol);
    request.set_source_port(source_port);
    request.set_destination_port(destination_port);
    request.set_tcp_flags(tcp_flags);
    grpc::ClientContext context;
    SetDeadline(context, 10s);
    return stub_->Trace(&context, request, response);
  }

  bool Ping(const testing::TestPod& from, const testing::TestPod& to) {
    return testing::RunCommand("ip netns exec " + from.netns + " ping -q -c 1 -W 1 " + to.ip +
                               " >/dev/null 2>&1") == 0;
  }
  // ICMPv6 echo; two tries a second apart, so a neighbour solicitation the
  // kernel sent before the address's solicited-node group was joined (it
  // retransmits after 1 s) cannot fail an allowed ping.
  bool Ping6(const testing::TestPod& from, const testing::TestPod& to) {
    return testing::RunCommand("ip netns exec " + from.netns + " ping -6 -q -c 1 -w 3 -W 1 " +
                               Ipv6Of(to) + " >/dev/null 2>&1") == 0;
  }

  // Forgets every neighbour on both sides of both veths, so the next packet
  // needs neighbour discovery through the (isolated) pods' programs.
  void FlushNeighbours() {
    const std::string node = node_.node_netns_path();
    const std::string n = "ip -n " + node.substr(node.rfind('/') + 1) + " neigh flush dev ";
    for (const testing::TestPod* pod : {&node_.a(), &node_.b()}) {
      testing::RunCommand(n + pod->host_ifname);
      testing::RunCommand("ip -n " + pod->netns + " neigh flush dev eth0");
    }
  }

  // The node's neighbour entry for a pod's IPv6 address ("" when none).
  std::string NodeNeighbour6(const testing::TestPod& pod) {
    const std::string node = node_.node_netns_path();
    absl::StatusOr<std::string> out = testing::CommandOutput(
        "ip -n " + node.substr(node.rfind('/') + 1) + " -6 neigh show " + Ipv6Of(pod) + " dev " +
        pod.host_ifname);
    return out.ok() ? *out : "";
  }

  ScopedTwoPodNode node_{"e"};
  ScopedBpfDir bpf_dir_{"e2e"};
  ScopedTempDir state_dir_{"e2e-state"};
  std::string socket_ = state_dir_.path() + "/datapath.sock";
  std::unique_ptr<NetnsProcess> daemon_;
  std::unique_ptr<v1::DatapathService::Stub> stub_;
};

// Collects events from StreamEvents on a background thread.
class EventCollector {
 public:
  explicit EventCollector(v1::DatapathService::Stub* stub) {
    reader_ = stub->StreamEvents(&context_, v1::StreamEventsRequest());
    // The server sends its initial metadata once the subscription exists:
    // events caused after this returns are not missed.
    reader_->WaitForInitialMetadata();
    thread_ = std::thread([this] {
      v1::StreamEventsResponse response;
      while (reader_->Read(&response)) {
        std::lock_guard<std::mutex> lock(mutex_);
        events_.push_back(response.event());
      }
    });
  }
  ~EventCollector() {
    context_.TryCancel();
    thread_.join();
  }
  // Waits up to 5 s for an event matching `match`.
  template <typename Match>
  std::optional<v1::Event> WaitFor(Match match) {
    for (int i = 0; i < 50; ++i) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const v1::Event& event : events_) {
          if (match(event)) return event;
        }
      }
      std::this_thread::sleep_for(100ms);
    }
    return std::nullopt;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::StreamEventsResponse>> reader_;
  std::mutex mutex_;
  std::vector<v1::Event> events_;
  std::thread thread_;
};

TEST_F(PolicyEndToEndTest, AllowsAndDeniesTcpUdpAndIcmpRepliesPassAndDropsAreStreamed) {
  CreateBothPods();
  EventCollector events(stub_.get());
  const std::string& a = node_.a().netns_path;
  const std::string& b = node_.b().netns_path;

  // TCP: allowed port works both ways (the reply enters A, which accepts
  // nothing new: conntrack lets it in).
  absl::StatusOr<NetnsSocket> listener = testing::ListenTcp(b, kAllowedTcpPort);
  ASSERT_TRUE(listener.ok()) << listener.status();
  EchoServer echo(*std::move(listener));
  absl::StatusOr<NetnsSocket> connection = testing::ConnectTcp(a, node_.b().ip, kAllowedTcpPort, 2s);
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_TRUE(Exchange(*connection, "hello through policy").ok());

  // TCP: a port without a rule and a port with a deny rule, both listening.
  absl::StatusOr<NetnsSocket> unlisted = testing::ListenTcp(b, kUnlistedTcpPort);
  absl::StatusOr<NetnsSocket> denied = testing::ListenTcp(b, kDeniedTcpPort);
  ASSERT_TRUE(unlisted.ok() && denied.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(
      testing::ConnectTcp(a, node_.b().ip, kUnlistedTcpPort, 700ms).status()));
  EXPECT_TRUE(absl::IsDeadlineExceeded(
      testing::ConnectTcp(a, node_.b().ip, kDeniedTcpPort, 700ms).status()));
  // Nor may B open a connection to A (A is ingress-isolated without rules).
  absl::StatusOr<NetnsSocket> a_listener = testing::ListenTcp(a, kAllowedTcpPort);
  ASSERT_TRUE(a_listener.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(
      testing::ConnectTcp(b, node_.a().ip, kAllowedTcpPort, 700ms).status()));

  // UDP: request on the allowed port is answered; the other port is silent.
  absl::StatusOr<NetnsSocket> server = testing::BindUdp(b, kAllowedUdpPort);
  absl::StatusOr<NetnsSocket> silent = testing::BindUdp(b, kUnlistedUdpPort);
  absl::StatusOr<NetnsSocket> client = testing::BindUdp(a, 0);
  ASSERT_TRUE(server.ok() && silent.ok() && client.ok());
  ASSERT_TRUE(testing::SendUdp(*client, node_.b().ip, kAllowedUdpPort, "question").ok());
  absl::StatusOr<std::pair<std::string, uint16_t>> request = testing::ReceiveUdp(*server, 2s);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->first, "question");
  ASSERT_TRUE(testing::SendUdp(*server, node_.a().ip, request->second, "answer").ok());
  absl::StatusOr<std::pair<std::string, uint16_t>> reply = testing::ReceiveUdp(*client, 2s);
  ASSERT_TRUE(reply.ok()) << "the UDP reply must pass A's ingress: " << reply.status();
  EXPECT_EQ(reply->first, "answer");
  ASSERT_TRUE(testing::SendUdp(*client, node_.b().ip, kUnlistedUdpPort, "nobody").ok());
  EXPECT_FALSE(testing::ReceiveUdp(*silent, 500ms).ok());

  // ICMP: echo A -> B allowed (reply via conntrack), B -> A denied.
  EXPECT_TRUE(Ping(node_.a(), node_.b()));
  EXPECT_FALSE(Ping(node_.b(), node_.a()));

  // The drops, with the right reason, rule and endpoint.
  auto drop = [&](uint32_t port, v1::DropReason reason) {
    return events.WaitFor([&](const v1::Event& e) {
      return e.type() == v1::EVENT_TYPE_DROP && e.protocol() == 6 &&
             e.destination_port() == port && e.reason() == reason;
    });
  };
  std::optional<v1::Event> default_deny = drop(kUnlistedTcpPort, v1::DROP_REASON_POLICY_DEFAULT_DENY);
  ASSERT_TRUE(default_deny.has_value());
  EXPECT_EQ(default_deny->endpoint_key().container_id(), "ctr-b");
  EXPECT_EQ(default_deny->direction(), v1::TRAFFIC_DIRECTION_TO_POD);
  EXPECT_EQ(default_deny->source_ip(), node_.a().ip);
  EXPECT_EQ(default_deny->source_identity(), kIdentityA);
  EXPECT_EQ(default_deny->destination_identity(), kIdentityB);
  EXPECT_EQ(default_deny->rule_id(), 0u);
  std::optional<v1::Event> denied_by_rule = drop(kDeniedTcpPort, v1::DROP_REASON_POLICY_DENY);
  ASSERT_TRUE(denied_by_rule.has_value());
  EXPECT_EQ(denied_by_rule->rule_id(), 66u);
  std::optional<v1::Event> into_a = drop(kAllowedTcpPort, v1::DROP_REASON_POLICY_DEFAULT_DENY);
  ASSERT_TRUE(into_a.has_value());
  EXPECT_EQ(into_a->endpoint_key().container_id(), "ctr-a");

  // The node-wide counters saw the same.
  grpc::ClientContext context;
  SetDeadline(context, 10s);
  v1::GetMetricsResponse metrics;
  ASSERT_TRUE(stub_->GetMetrics(&context, v1::GetMetricsRequest(), &metrics).ok());
  std::map<v1::DropReason, uint64_t> drops;
  for (const v1::DropCount& count : metrics.drops()) drops[count.reason()] = count.packets();
  std::map<v1::Verdict, uint64_t> verdicts;
  for (const v1::VerdictCount& count : metrics.verdicts()) verdicts[count.verdict()] = count.packets();
  EXPECT_GE(drops[v1::DROP_REASON_POLICY_DEFAULT_DENY], 3u);
  EXPECT_GE(drops[v1::DROP_REASON_POLICY_DENY], 1u);
  EXPECT_EQ(drops[v1::DROP_REASON_INIT_IDENTITY], 0u);
  EXPECT_GE(verdicts[v1::VERDICT_ALLOWED_POLICY], 3u);  // TCP, UDP and ICMP into B
  EXPECT_GE(verdicts[v1::VERDICT_ALLOWED_CONNTRACK], 3u);
}

TEST_F(PolicyEndToEndTest, Ipv6AllowsAndDeniesTcpUdpAndIcmpv6RepliesPassAndDropsAreStreamed) {
  CreateBothPods();
  EventCollector events(stub_.get());
  const std::string& a = node_.a().netns_path;
  const std::string& b = node_.b().netns_path;
  // A is isolated for ingress without a rule, B with rules only for A: the
  // first packets need neighbour discovery through both pods' programs.
  FlushNeighbours();

  // TCP over IPv6: the rule for A's identity serves both families; the
  // reply enters A through conntrack.
  absl::StatusOr<NetnsSocket> listener = testing::ListenTcp(b, kAllowedTcpPort, AF_INET6);
  ASSERT_TRUE(listener.ok()) << listener.status();
  EchoServer echo(*std::move(listener));
  absl::StatusOr<NetnsSocket> connection = testing::ConnectTcp(a, kPodB6, kAllowedTcpPort, 3s);
  ASSERT_TRUE(connection.ok()) << connection.status();
  EXPECT_TRUE(Exchange(*connection, "hello over IPv6").ok());
  // Neighbour discovery crossed the isolated programs both ways: the node
  // resolved both pods (and the pods their gateway, or nothing would pass).
  for (const testing::TestPod* pod : {&node_.a(), &node_.b()}) {
    std::string neighbour = NodeNeighbour6(*pod);
    EXPECT_TRUE(neighbour.find("REACHABLE") != std::string::npos ||
                neighbour.find("STALE") != std::string::npos ||
                neighbour.find("DELAY") != std::string::npos ||
                neighbour.find("PROBE") != std::string::npos)
        << "node's neighbour entry for " << Ipv6Of(*pod) << ": '" << neighbour << "'";
  }

  absl::StatusOr<NetnsSocket> unlisted = testing::ListenTcp(b, kUnlistedTcpPort, AF_INET6);
  absl::StatusOr<NetnsSocket> denied = testing::ListenTcp(b, kDeniedTcpPort, AF_INET6);
  absl::StatusOr<NetnsSocket> a_listener = testing::ListenTcp(a, kAllowedTcpPort, AF_INET6);
  ASSERT_TRUE(unlisted.ok() && denied.ok() && a_listener.ok());
  EXPECT_TRUE(
      absl::IsDeadlineExceeded(testing::ConnectTcp(a, kPodB6, kUnlistedTcpPort, 700ms).status()));
  EXPECT_TRUE(
      absl::IsDeadlineExceeded(testing::ConnectTcp(a, kPodB6, kDeniedTcpPort, 700ms).status()));
  EXPECT_TRUE(
      absl::IsDeadlineExceeded(testing::ConnectTcp(b, kPodA6, kAllowedTcpPort, 700ms).status()));

  // UDP over IPv6: answered on the allowed port, silence on the other.
  absl::StatusOr<NetnsSocket> server = testing::BindUdp(b, kAllowedUdpPort, AF_INET6);
  absl::StatusOr<NetnsSocket> silent = testing::BindUdp(b, kUnlistedUdpPort, AF_INET6);
  absl::StatusOr<NetnsSocket> client = testing::BindUdp(a, 0, AF_INET6);
  ASSERT_TRUE(server.ok() && silent.ok() && client.ok());
  ASSERT_TRUE(testing::SendUdp(*client, kPodB6, kAllowedUdpPort, "question6").ok());
  absl::StatusOr<std::pair<std::string, uint16_t>> request = testing::ReceiveUdp(*server, 2s);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->first, "question6");
  ASSERT_TRUE(testing::SendUdp(*server, kPodA6, request->second, "answer6").ok());
  absl::StatusOr<std::pair<std::string, uint16_t>> reply = testing::ReceiveUdp(*client, 2s);
  ASSERT_TRUE(reply.ok()) << "the UDP reply must pass A's ingress: " << reply.status();
  EXPECT_EQ(reply->first, "answer6");
  ASSERT_TRUE(testing::SendUdp(*client, kPodB6, kUnlistedUdpPort, "nobody").ok());
  EXPECT_FALSE(testing::ReceiveUdp(*silent, 500ms).ok());

  // ICMPv6 echo: A -> B allowed by the type-128 rule (reply via conntrack),
  // B -> A denied; the IPv4 echo rule (type 8) does not open ICMPv6.
  EXPECT_TRUE(Ping6(node_.a(), node_.b()));
  EXPECT_FALSE(Ping6(node_.b(), node_.a()));

  auto drop = [&](uint32_t protocol, uint32_t port, v1::DropReason reason) {
    return events.WaitFor([&](const v1::Event& e) {
      return e.type() == v1::EVENT_TYPE_DROP && e.protocol() == protocol &&
             e.destination_port() == port && e.reason() == reason &&
             e.source_ip().find(':') != std::string::npos;
    });
  };
  std::optional<v1::Event> default_deny = drop(6, kUnlistedTcpPort, v1::DROP_REASON_POLICY_DEFAULT_DENY);
  ASSERT_TRUE(default_deny.has_value());
  EXPECT_EQ(default_deny->endpoint_key().container_id(), "ctr-b");
  EXPECT_EQ(default_deny->direction(), v1::TRAFFIC_DIRECTION_TO_POD);
  EXPECT_EQ(default_deny->source_ip(), kPodA6);
  EXPECT_EQ(default_deny->destination_ip(), kPodB6);
  EXPECT_EQ(default_deny->source_identity(), kIdentityA);
  EXPECT_EQ(default_deny->destination_identity(), kIdentityB);
  EXPECT_EQ(default_deny->rule_id(), 0u);
  std::optional<v1::Event> denied_by_rule = drop(6, kDeniedTcpPort, v1::DROP_REASON_POLICY_DENY);
  ASSERT_TRUE(denied_by_rule.has_value());
  EXPECT_EQ(denied_by_rule->rule_id(), 66u);
  std::optional<v1::Event> udp_drop = drop(17, kUnlistedUdpPort, v1::DROP_REASON_POLICY_DEFAULT_DENY);
  ASSERT_TRUE(udp_drop.has_value());
  EXPECT_EQ(udp_drop->endpoint_key().container_id(), "ctr-b");
  // The echo request into A: ICMPv6 (58), "port" = type 128.
  std::optional<v1::Event> ping_into_a = drop(58, 128, v1::DROP_REASON_POLICY_DEFAULT_DENY);
  ASSERT_TRUE(ping_into_a.has_value());
  EXPECT_EQ(ping_into_a->endpoint_key().container_id(), "ctr-a");
  EXPECT_EQ(ping_into_a->source_ip(), kPodB6);

  // Trace agrees with the traffic for IPv6 too.
  v1::TraceResponse traced;
  ASSERT_TRUE(Trace(kPodA6, kPodB6, 6, 40000, kAllowedTcpPort, &traced).ok());
  EXPECT_TRUE(traced.allowed());
  ASSERT_TRUE(Trace(kPodA6, kPodB6, 6, 40000, kDeniedTcpPort, &traced).ok());
  EXPECT_FALSE(traced.allowed());
  ASSERT_EQ(traced.hops_size(), 2);
  EXPECT_EQ(traced.hops(1).rule_id(), 66u);
}

// A datagram bigger than the veth's MTU leaves the sender in fragments, and
// only the first carries the UDP ports. B allows A on one UDP port only:
// the whole datagram must arrive there (and the answer, as big, back
// through conntrack), and nothing of one sent to another port. Both
// families (IPv6 fragments at the sender only, with a fragment header).
TEST_F(PolicyEndToEndTest, FragmentedUdpDatagramsPassWhereTheirFirstFragmentDoes) {
  CreateBothPods();
  const std::string& a = node_.a().netns_path;
  const std::string& b = node_.b().netns_path;
  const std::string question(4000, 'q'), answer(5000, 'a');
  for (int family : {AF_INET, AF_INET6}) {
    SCOPED_TRACE(family == AF_INET ? "IPv4" : "IPv6");
    const std::string b_ip = family == AF_INET ? node_.b().ip : kPodB6;
    const std::string a_ip = family == AF_INET ? node_.a().ip : kPodA6;
    absl::StatusOr<NetnsSocket> server = testing::BindUdp(b, kAllowedUdpPort, family);
    absl::StatusOr<NetnsSocket> silent = testing::BindUdp(b, kUnlistedUdpPort, family);
    absl::StatusOr<NetnsSocket> client = testing::BindUdp(a, 0, family);
    ASSERT_TRUE(server.ok() && silent.ok() && client.ok());

    ASSERT_TRUE(testing::SendUdp(*client, b_ip, kAllowedUdpPort, question).ok());
    absl::StatusOr<std::pair<std::string, uint16_t>> request = testing::ReceiveUdp(*server, 3s);
    ASSERT_TRUE(request.ok()) << "the fragmented datagram must arrive whole: "
                              << request.status();
    EXPECT_EQ(request->first, question);
    ASSERT_TRUE(testing::SendUdp(*server, a_ip, request->second, answer).ok());
    absl::StatusOr<std::pair<std::string, uint16_t>> reply = testing::ReceiveUdp(*client, 3s);
    ASSERT_TRUE(reply.ok()) << "the fragmented reply must pass A's ingress: " << reply.status();
    EXPECT_EQ(reply->first, answer);

    ASSERT_TRUE(testing::SendUdp(*client, b_ip, kUnlistedUdpPort, question).ok());
    EXPECT_FALSE(testing::ReceiveUdp(*silent, 500ms).ok());
  }
}

TEST_F(PolicyEndToEndTest, EventStreamsCanBeNarrowedToOneEndpoint) {
  CreateBothPods();
  grpc::ClientContext context;
  SetDeadline(context, 10s);  // a broken filter fails the Read, not the run
  v1::StreamEventsRequest request;
  *request.mutable_key() = Key("ctr-a");
  request.add_types(v1::EVENT_TYPE_DROP);
  std::unique_ptr<grpc::ClientReader<v1::StreamEventsResponse>> reader =
      stub_->StreamEvents(&context, request);
  reader->WaitForInitialMetadata();
  // A drop at B (unlisted port), then one at A (B may not connect to A).
  EXPECT_FALSE(
      testing::ConnectTcp(node_.a().netns_path, node_.b().ip, kUnlistedTcpPort, 300ms).ok());
  EXPECT_FALSE(
      testing::ConnectTcp(node_.b().netns_path, node_.a().ip, kAllowedTcpPort, 300ms).ok());
  // Every event is A's; the TCP drop comes among them. The node's own IPv6
  // multicast listener reports into A (ICMPv6 143 from the host veth's
  // link-local address) pass like neighbour discovery: no ICMPv6 drops.
  v1::StreamEventsResponse response;
  bool tcp_drop_seen = false;
  for (int i = 0; i < 20 && !tcp_drop_seen && reader->Read(&response); ++i) {
    EXPECT_EQ(response.event().endpoint_key().container_id(), "ctr-a");
    EXPECT_NE(response.event().protocol(), 58u) << "an ICMPv6 drop: " << response.DebugString();
    tcp_drop_seen = response.event().protocol() == 6 &&
                    response.event().destination_port() == kAllowedTcpPort;
  }
  EXPECT_TRUE(tcp_drop_seen);
  context.TryCancel();
  while (reader->Read(&response)) {
  }

  grpc::ClientContext unknown_context;
  SetDeadline(unknown_context, 10s);
  *request.mutable_key() = Key("ctr-nobody");
  std::unique_ptr<grpc::ClientReader<v1::StreamEventsResponse>> unknown =
      stub_->StreamEvents(&unknown_context, request);
  EXPECT_FALSE(unknown->Read(&response));
  EXPECT_EQ(unknown->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(PolicyEndToEndTest, EstablishedConnectionSurvivesPolicyReplacement) {
  CreateBothPods();
  absl::StatusOr<NetnsSocket> listener = testing::ListenTcp(node_.b().netns_path, kAllowedTcpPort);
  ASSERT_TRUE(listener.ok());
  EchoServer echo(*std::move(listener));
  absl::StatusOr<NetnsSocket> connection =
      testing::ConnectTcp(node_.a().netns_path, node_.b().ip, kAllowedTcpPort, 2s);
  ASSERT_TRUE(connection.ok()) << connection.status();
  ASSERT_TRUE(Exchange(*connection, "before").ok());
  absl::StatusOr<NetnsSocket> listener6 =
      testing::ListenTcp(node_.b().netns_path, kAllowedTcpPort, AF_INET6);
  ASSERT_TRUE(listener6.ok()) << listener6.status();
  EchoServer echo6(*std::move(listener6));
  absl::StatusOr<NetnsSocket> connection6 =
      testing::ConnectTcp(node_.a().netns_path, kPodB6, kAllowedTcpPort, 3s);
  ASSERT_TRUE(connection6.ok()) << connection6.status();
  ASSERT_TRUE(Exchange(*connection6, "before, IPv6").ok());

  v1::ReplaceEndpointPolicyRequest request;
  *request.mutable_key() = Key("ctr-b");
  *request.mutable_policy() = PolicyOfB();
  *request.mutable_policy()->add_rules() = Rule(v1::POLICY_DIRECTION_INGRESS, 4242, 6, 1234,
                                                v1::POLICY_ACTION_ALLOW, 77);
  grpc::ClientContext context;
  SetDeadline(context, 10s);
  v1::ReplaceEndpointPolicyResponse response;
  grpc::Status status = stub_->ReplaceEndpointPolicy(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.policy().rule_count(), 6u);
  EXPECT_TRUE(response.policy().ingress_isolated());

  EXPECT_TRUE(Exchange(*connection, "after an unrelated rule was added").ok());
  EXPECT_TRUE(Exchange(*connection6, "after an unrelated rule was added, IPv6").ok());
  EXPECT_TRUE(testing::ConnectTcp(node_.a().netns_path, kPodB6, kAllowedTcpPort, 3s).ok());
  EXPECT_FALSE(testing::ConnectTcp(node_.a().netns_path, kPodB6, kUnlistedTcpPort, 500ms).ok());
  // And a new connection is still judged by the (new) policy.
  EXPECT_TRUE(testing::ConnectTcp(node_.a().netns_path, node_.b().ip, kAllowedTcpPort, 2s).ok());
  EXPECT_FALSE(
      testing::ConnectTcp(node_.a().netns_path, node_.b().ip, kUnlistedTcpPort, 500ms).ok());

  // The policy and its counters as the kernel has them.
  grpc::ClientContext dump_context;
  SetDeadline(dump_context, 10s);
  v1::DumpPolicyRequest dump_request;
  *dump_request.mutable_key() = Key("ctr-b");
  v1::DumpPolicyResponse dump;
  ASSERT_TRUE(stub_->DumpPolicy(&dump_context, dump_request, &dump).ok());
  ASSERT_EQ(dump.entries_size(), 6);
  bool found = false;
  for (const v1::PolicyEntry& entry : dump.entries()) {
    if (entry.rule().rule_id() == 1) {
      found = true;
      EXPECT_GE(entry.packets(), 1u) << "the new connection's SYN hit rule 1";
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(PolicyEndToEndTest, EndpointWithoutIdentityIsDeniedUntilItGetsOne) {
  ASSERT_TRUE(CreateEndpoint("ctr-a", node_.a(), /*identity=*/0, std::nullopt).ok());
  ASSERT_TRUE(CreateEndpoint("ctr-b", node_.b(), kIdentityB, PolicyOfB()).ok());
  EXPECT_FALSE(Ping(node_.a(), node_.b()));

  v1::TraceResponse traced;
  ASSERT_TRUE(Trace(node_.a().ip, node_.b().ip, 1, 7, 0, &traced).ok());
  ASSERT_GE(traced.hops_size(), 1);
  EXPECT_EQ(traced.hops(0).reason(), v1::DROP_REASON_INIT_IDENTITY);
  EXPECT_FALSE(traced.allowed());

  grpc::ClientContext context;
  SetDeadline(context, 10s);
  v1::SetEndpointIdentityRequest request;
  *request.mutable_key() = Key("ctr-a");
  request.set_identity(kIdentityA);
  v1::SetEndpointIdentityResponse response;
  ASSERT_TRUE(stub_->SetEndpointIdentity(&context, request, &response).ok());
  EXPECT_EQ(response.endpoint().identity(), kIdentityA);
  EXPECT_TRUE(Ping(node_.a(), node_.b()));
}

TEST_F(PolicyEndToEndTest, TraceRunsTheRealProgramsOfBothEndpoints) {
  CreateBothPods();
  auto trace = [&](uint16_t port) {
    v1::TraceResponse response;
    grpc::Status status = Trace(node_.a().ip, node_.b().ip, 6, 40000, port, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  };
  v1::TraceResponse allowed = trace(kAllowedTcpPort);
  ASSERT_EQ(allowed.hops_size(), 2);
  EXPECT_TRUE(allowed.allowed());
  EXPECT_EQ(allowed.hops(0).endpoint_key().container_id(), "ctr-a");
  EXPECT_EQ(allowed.hops(0).direction(), v1::TRAFFIC_DIRECTION_FROM_POD);
  EXPECT_EQ(allowed.hops(0).verdict(), v1::VERDICT_ALLOWED_NOT_ISOLATED);
  EXPECT_EQ(allowed.hops(1).endpoint_key().container_id(), "ctr-b");
  EXPECT_EQ(allowed.hops(1).verdict(), v1::VERDICT_ALLOWED_POLICY);
  EXPECT_EQ(allowed.hops(1).rule_id(), 1u);
  EXPECT_EQ(allowed.hops(1).peer_identity(), kIdentityA);
  EXPECT_EQ(allowed.hops(1).endpoint_identity(), kIdentityB);

  v1::TraceResponse denied = trace(kDeniedTcpPort);
  ASSERT_EQ(denied.hops_size(), 2);
  EXPECT_FALSE(denied.allowed());
  EXPECT_EQ(denied.hops(1).reason(), v1::DROP_REASON_POLICY_DENY);
  EXPECT_EQ(denied.hops(1).rule_id(), 66u);

  // Tracing created no conntrack entry: the "reply" of the traced flow is
  // still a new, denied flow into A.
  v1::TraceResponse reply_trace;
  ASSERT_TRUE(Trace(node_.b().ip, node_.a().ip, 6, kAllowedTcpPort, 40000, &reply_trace,
                    /*tcp_flags=SYN|ACK*/ 0x12)
                  .ok());
  EXPECT_FALSE(reply_trace.allowed());

  v1::TraceResponse unknown;
  EXPECT_EQ(Trace("192.0.2.1", "192.0.2.2", 6, 1, 2, &unknown).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(PolicyEndToEndTest, RejectsBadPoliciesAndPrefixesWithActionableErrors) {
  CreateBothPods();
  v1::ReplaceEndpointPolicyRequest request;
  *request.mutable_key() = Key("ctr-b");
  *request.mutable_policy()->add_rules() =
      Rule(v1::POLICY_DIRECTION_INGRESS, 0, 0, 80, v1::POLICY_ACTION_ALLOW, 1);
  grpc::ClientContext context;
  SetDeadline(context, 10s);
  v1::ReplaceEndpointPolicyResponse response;
  grpc::Status status = stub_->ReplaceEndpointPolicy(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("needs a protocol"), std::string::npos)
      << status.error_message();
  // The rejected policy changed nothing: B still accepts A on 8080.
  v1::TraceResponse traced;
  ASSERT_TRUE(Trace(node_.a().ip, node_.b().ip, 6, 40000, kAllowedTcpPort, &traced).ok());
  EXPECT_TRUE(traced.allowed());

  grpc::ClientContext unknown_context;
  SetDeadline(unknown_context, 10s);
  *request.mutable_key() = Key("ctr-nobody");
  request.clear_policy();
  EXPECT_EQ(stub_->ReplaceEndpointPolicy(&unknown_context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::UpsertPrefixIdentityRequest upsert;
  v1::PrefixIdentity* entry = upsert.add_entries();
  entry->set_prefix("10.0.0.0/33");
  entry->set_identity(5000);
  grpc::ClientContext upsert_context;
  SetDeadline(upsert_context, 10s);
  v1::UpsertPrefixIdentityResponse upserted;
  EXPECT_EQ(stub_->UpsertPrefixIdentity(&upsert_context, upsert, &upserted).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A valid CIDR peer identity shows up in the listing next to the pods'.
  entry->set_prefix("198.51.100.0/24");
  grpc::ClientContext ok_context;
  SetDeadline(ok_context, 10s);
  ASSERT_TRUE(stub_->UpsertPrefixIdentity(&ok_context, upsert, &upserted).ok());
  grpc::ClientContext list_context;
  SetDeadline(list_context, 10s);
  v1::ListPrefixIdentitiesResponse listed;
  ASSERT_TRUE(
      stub_->ListPrefixIdentities(&list_context, v1::ListPrefixIdentitiesRequest(), &listed).ok());
  std::map<std::string, uint32_t> entries;
  for (const v1::PrefixIdentity& e : listed.entries()) entries[e.prefix()] = e.identity();
  EXPECT_EQ(entries["198.51.100.0/24"], 5000u);
  EXPECT_EQ(entries[node_.a().ip + "/32"], kIdentityA);
  EXPECT_EQ(entries[node_.b().ip + "/32"], kIdentityB);
  EXPECT_EQ(entries["169.254.1.1/32"], 1u) << "the node's own address is the host identity";
}

// What one family's traffic did during the restarts.
struct RestartTraffic {
  std::atomic<int> exchanges{0}, broken{0}, new_connections{0}, failed_connections{0};
  std::atomic<int> denied_attempts{0}, denied_delivered{0};
};

TEST_F(PolicyEndToEndTest, RestartsUnderTrafficNeverBreakAllowedOrPassDeniedTraffic) {
  CreateBothPods();
  const std::string& a = node_.a().netns_path;
  const std::string& b = node_.b().netns_path;
  // Per family: an echo server on the allowed port, listeners on the
  // unlisted TCP and UDP ports (denied: nothing may arrive), a UDP client.
  struct Family {
    Family(bool is_v6, std::string ip) : v6(is_v6), b_ip(std::move(ip)) {}
    bool v6;
    std::string b_ip;
    absl::StatusOr<NetnsSocket> listener, denied_listener, denied_udp, udp_client, persistent;
    std::unique_ptr<EchoServer> echo;
    RestartTraffic traffic;
  };
  Family families[2] = {{false, node_.b().ip}, {true, kPodB6}};
  auto connect = [&](const Family& f, uint16_t port, std::chrono::milliseconds timeout) {
    return testing::ConnectTcp(a, f.b_ip, port, timeout);  // the family of f.b_ip
  };
  for (Family& f : families) {
    int family = f.v6 ? AF_INET6 : AF_INET;
    f.listener = testing::ListenTcp(b, kAllowedTcpPort, family);
    f.denied_listener = testing::ListenTcp(b, kUnlistedTcpPort, family);
    f.denied_udp = testing::BindUdp(b, kUnlistedUdpPort, family);
    f.udp_client = testing::BindUdp(a, 0, family);
    ASSERT_TRUE(f.listener.ok() && f.denied_listener.ok() && f.denied_udp.ok() && f.udp_client.ok())
        << (f.v6 ? "IPv6" : "IPv4") << " sockets";
    f.echo = std::make_unique<EchoServer>(*std::move(f.listener));
    f.persistent = connect(f, kAllowedTcpPort, 3s);
    ASSERT_TRUE(f.persistent.ok()) << f.persistent.status();
  }

  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  // The threads get each family by pointer: the loop's reference ends with
  // the iteration.
  for (Family* family = families; family != families + 2; ++family) {
    threads.emplace_back([&, family] {  // one long-lived connection
      for (int i = 0; i < 100000 && !stop; ++i) {
        if (Exchange(*family->persistent, "x").ok()) {
          ++family->traffic.exchanges;
        } else {
          ++family->traffic.broken;
          return;
        }
        std::this_thread::sleep_for(20ms);
      }
    });
    threads.emplace_back([&, family] {  // new allowed connections
      for (int i = 0; i < 10000 && !stop; ++i) {
        absl::StatusOr<NetnsSocket> c = connect(*family, kAllowedTcpPort, 3s);
        if (c.ok() && Exchange(*c, "new").ok()) {
          ++family->traffic.new_connections;
        } else {
          ++family->traffic.failed_connections;
        }
        std::this_thread::sleep_for(50ms);
      }
    });
    threads.emplace_back([&, family] {  // denied UDP and TCP
      const Family& f = *family;
      RestartTraffic& t = family->traffic;
      for (int i = 0; i < 100000 && !stop; ++i) {
        ++t.denied_attempts;
        (void)testing::SendUdp(*f.udp_client, f.b_ip, kUnlistedUdpPort, "no");
        if (i % 10 == 0 && connect(f, kUnlistedTcpPort, 100ms).ok()) ++t.denied_delivered;
        while (testing::ReceiveUdp(*f.denied_udp, 0ms).ok()) {
          ++t.denied_delivered;
        }
        std::this_thread::sleep_for(10ms);
      }
    });
  }

  for (int restart = 0; restart < 10; ++restart) {
    std::this_thread::sleep_for(300ms);
    daemon_->Kill9();
    std::this_thread::sleep_for(200ms);  // traffic flows with no daemon at all
    StartDaemon();
    if (HasFatalFailure()) break;
  }
  std::this_thread::sleep_for(500ms);
  stop = true;
  for (std::thread& thread : threads) thread.join();

  for (const Family& f : families) {
    const RestartTraffic& t = f.traffic;
    SCOPED_TRACE(f.v6 ? "IPv6" : "IPv4");
    EXPECT_EQ(t.broken.load(), 0);
    EXPECT_EQ(t.failed_connections.load(), 0);
    EXPECT_EQ(t.denied_delivered.load(), 0);
    // The traffic really ran throughout.
    EXPECT_GT(t.exchanges.load(), 50);
    EXPECT_GT(t.new_connections.load(), 20);
    EXPECT_GT(t.denied_attempts.load(), 100);
  }
}

}  // namespace
}  // namespace ebpfcni::datapath
