// End-to-end tests of the datapath service against the real kernel: the
// gRPC API on a unix socket, TC filters on real veths, traffic across them,
// restarts that must re-adopt without duplicating filters.
#include "services/datapath/datapath_service.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include <bpf/bpf.h>
#include <gmock/gmock.h>
#include <net/if.h>
#include <unistd.h>
#include <absl/strings/str_cat.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/grpc/channel.h"
#include "ebpfcni/datapath_abi.h"
#include "services/datapath/tc_attacher.h"
#include "services/datapath/tc_attachment.h"
#include "services/datapath/tcx_link.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

namespace v1 = ::ebpfcni::datapath::v1;
using testing::BuildUdpFrame;
using testing::kOtherHostMac;
using testing::ScopedBpfDir;
using testing::ScopedTempDir;
using testing::ScopedVethPair;
using testing::SendFrames;

constexpr size_t kFrameSize = 128;

// Programs on each hook of the interface, however attached (TCX links or
// clsact filters; see tc_attacher.h).
struct FilterCount {
  int ingress = 0;
  int egress = 0;
};

std::vector<uint32_t> Hook(int ifindex, TcDirection direction) {
  absl::StatusOr<std::vector<uint32_t>> programs = ProgramsOnHook(ifindex, direction);
  EXPECT_TRUE(programs.ok()) << programs.status();
  return programs.ok() ? *programs : std::vector<uint32_t>{};
}

FilterCount CountTcFilters(const std::string& ifname) {
  const int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex == 0) return {};
  return {static_cast<int>(Hook(ifindex, TcDirection::kIngress).size()),
          static_cast<int>(Hook(ifindex, TcDirection::kEgress).size())};
}

class DatapathServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pod_a_.ok()) << "could not create veth " << pod_a_.host_name();
    StartService();
  }
  void TearDown() override { StopService(); }

  void StartService() {
    EndpointManagerOptions options;
    options.bpf_dir = bpf_dir_.path();
    options.state_dir = state_dir_.path();
    options.tc_attach_mode = attach_mode_;
    absl::StatusOr<std::unique_ptr<EndpointManager>> manager = EndpointManager::Start(options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = *std::move(manager);
    service_ = std::make_unique<DatapathServiceImpl>(manager_.get());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path_, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::DatapathService::NewStub(MakeChannel(socket_path_));
  }

  // Like a daemon exit: the server and all fds go away, pins and filters
  // stay in the kernel.
  void StopService() {
    stub_.reset();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
    service_.reset();
    manager_.reset();
  }

  void RestartService() {
    StopService();
    StartService();
  }

  v1::EndpointKey Key(const std::string& container) {
    v1::EndpointKey key;
    key.set_container_id(container);
    key.set_interface_name("eth0");
    return key;
  }

  v1::CreateEndpointRequest CreateRequest(const std::string& container,
                                          const ScopedVethPair& pod) {
    v1::CreateEndpointRequest request;
    *request.mutable_key() = Key(container);
    request.set_host_ifindex(pod.host_ifindex());
    request.set_host_interface_name(pod.host_name());
    request.set_netns_path("/run/netns/" + pod.netns());
    request.add_addresses("10.251.0.2");
    request.set_pod_namespace("default");
    request.set_pod_name("pod-" + container);
    // With an identity and no policy the pod is not isolated: traffic
    // passes and is counted.
    request.set_identity(1000);
    return request;
  }

  grpc::Status Create(const v1::CreateEndpointRequest& request,
                      v1::CreateEndpointResponse* response) {
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    return stub_->CreateEndpoint(&context, request, response);
  }

  grpc::Status Get(const std::string& container, v1::Endpoint* endpoint) {
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    v1::GetEndpointRequest request;
    *request.mutable_key() = Key(container);
    v1::GetEndpointResponse response;
    grpc::Status status = stub_->GetEndpoint(&context, request, &response);
    *endpoint = response.endpoint();
    return status;
  }

  grpc::Status Delete(const std::string& container, bool* deleted) {
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    v1::DeleteEndpointRequest request;
    *request.mutable_key() = Key(container);
    v1::DeleteEndpointResponse response;
    grpc::Status status = stub_->DeleteEndpoint(&context, request, &response);
    *deleted = response.deleted();
    return status;
  }

  // Sends `count` frames each way across the pod's veth.
  void SendTraffic(const ScopedVethPair& pod, int count) {
    std::vector<uint8_t> from_pod = BuildUdpFrame(kOtherHostMac, "10.251.0.2", "10.251.0.1", kFrameSize);
    std::vector<uint8_t> to_pod = BuildUdpFrame(kOtherHostMac, "10.251.0.1", "10.251.0.2", kFrameSize);
    ASSERT_TRUE(SendFrames(pod.netns(), pod.peer_name(), from_pod, count).ok());
    ASSERT_TRUE(SendFrames("", pod.host_name(), to_pod, count).ok());
  }

  TcAttachMode attach_mode_ = TcAttachMode::kAuto;
  ScopedBpfDir bpf_dir_{"svc"};
  ScopedTempDir state_dir_{"svc-state"};
  std::string socket_path_ = state_dir_.path() + "/datapath.sock";
  ScopedVethPair pod_a_{"a", "10.251.0.2/30"};
  std::unique_ptr<EndpointManager> manager_;
  std::unique_ptr<DatapathServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::DatapathService::Stub> stub_;
};

TEST_F(DatapathServiceTest, CreateAttachesCountsSurvivesRestartAndDeleteDetaches) {
  v1::CreateEndpointResponse created;
  grpc::Status status = Create(CreateRequest("ctr-a", pod_a_), &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const uint32_t endpoint_id = created.endpoint().endpoint_id();
  EXPECT_NE(endpoint_id, 0u);
  EXPECT_EQ(created.endpoint().state(), v1::ATTACHMENT_STATE_ATTACHED);
  EXPECT_EQ(created.endpoint().host_interface_name(), pod_a_.host_name());
  EXPECT_EQ(created.endpoint().pod_name(), "pod-ctr-a");

  // The kernel has exactly our programs in our filter slots.
  const int ifindex = static_cast<int>(pod_a_.host_ifindex());
  const ProgramIds first_programs = manager_->bpf().program_ids();
  EXPECT_THAT(Hook(ifindex, TcDirection::kIngress), ::testing::ElementsAre(first_programs.from_container));
  EXPECT_THAT(Hook(ifindex, TcDirection::kEgress), ::testing::ElementsAre(first_programs.to_container));
  FilterCount filters = CountTcFilters(pod_a_.host_name());
  EXPECT_EQ(filters.ingress, 1);
  EXPECT_EQ(filters.egress, 1);

  // Traffic both ways is counted against the endpoint.
  constexpr int kFrames = 20;
  SendTraffic(pod_a_, kFrames);
  v1::Endpoint endpoint;
  ASSERT_TRUE(Get("ctr-a", &endpoint).ok());
  EXPECT_GE(endpoint.counters().from_pod_packets(), static_cast<uint64_t>(kFrames));
  EXPECT_GE(endpoint.counters().from_pod_bytes(), kFrames * kFrameSize);
  EXPECT_GE(endpoint.counters().to_pod_packets(), static_cast<uint64_t>(kFrames));
  EXPECT_GE(endpoint.counters().to_pod_bytes(), kFrames * kFrameSize);
  const v1::TrafficCounters before_restart = endpoint.counters();

  // A repeated ADD is idempotent: same id, still one filter per side.
  v1::CreateEndpointResponse again;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &again).ok());
  EXPECT_EQ(again.endpoint().endpoint_id(), endpoint_id);
  filters = CountTcFilters(pod_a_.host_name());
  EXPECT_EQ(filters.ingress, 1);
  EXPECT_EQ(filters.egress, 1);

  // Restart: new programs replace the old ones in place, counters survive.
  RestartService();
  ASSERT_EQ(manager_->restore_summary().readopted.size(), 1u);
  EXPECT_EQ(manager_->bpf().previous_program_ids().from_container, first_programs.from_container);
  const ProgramIds second_programs = manager_->bpf().program_ids();
  EXPECT_NE(second_programs.from_container, first_programs.from_container);
  EXPECT_THAT(Hook(ifindex, TcDirection::kIngress), ::testing::ElementsAre(second_programs.from_container));
  EXPECT_THAT(Hook(ifindex, TcDirection::kEgress), ::testing::ElementsAre(second_programs.to_container));
  filters = CountTcFilters(pod_a_.host_name());
  EXPECT_EQ(filters.ingress, 1);
  EXPECT_EQ(filters.egress, 1);

  ASSERT_TRUE(Get("ctr-a", &endpoint).ok());
  EXPECT_EQ(endpoint.endpoint_id(), endpoint_id);
  EXPECT_EQ(endpoint.state(), v1::ATTACHMENT_STATE_ATTACHED);
  EXPECT_GE(endpoint.counters().from_pod_packets(), before_restart.from_pod_packets());
  EXPECT_GE(endpoint.counters().to_pod_packets(), before_restart.to_pod_packets());

  // The new programs count too.
  SendTraffic(pod_a_, kFrames);
  ASSERT_TRUE(Get("ctr-a", &endpoint).ok());
  EXPECT_GE(endpoint.counters().from_pod_packets(), before_restart.from_pod_packets() + kFrames);
  EXPECT_GE(endpoint.counters().to_pod_packets(), before_restart.to_pod_packets() + kFrames);

  // Delete detaches and forgets; a second delete has nothing to do.
  bool deleted = false;
  ASSERT_TRUE(Delete("ctr-a", &deleted).ok());
  EXPECT_TRUE(deleted);
  EXPECT_THAT(Hook(ifindex, TcDirection::kIngress), ::testing::IsEmpty());
  EXPECT_THAT(Hook(ifindex, TcDirection::kEgress), ::testing::IsEmpty());
  filters = CountTcFilters(pod_a_.host_name());
  EXPECT_EQ(filters.ingress, 0);
  EXPECT_EQ(filters.egress, 0);
  EXPECT_EQ(Get("ctr-a", &endpoint).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Delete("ctr-a", &deleted).ok());
  EXPECT_FALSE(deleted);
  EXPECT_EQ(*manager_->bpf().EndpointForIfindex(pod_a_.host_ifindex()), std::nullopt);
}

// Pins of our TCX links (<bpf_dir>/links/<ifindex>-<hook>), sorted.
std::vector<std::string> LinkPins(const std::string& bpf_dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(bpf_dir + "/links", error)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// An upgrade from a clsact-only version, or an operator changing
// --tc_attach, must move every endpoint to the new kind of attachment with
// exactly one copy of our programs on each hook at the end, and traffic
// counted throughout.
TEST_F(DatapathServiceTest, SwitchingAttachModeAcrossRestartsLeavesOneCopyOnEachHook) {
  if (!KernelSupportsTcx()) GTEST_SKIP() << "kernel without TCX";
  const int ifindex = static_cast<int>(pod_a_.host_ifindex());
  const std::vector<std::string> our_pins = {absl::StrCat(ifindex, "-egress"),
                                             absl::StrCat(ifindex, "-ingress")};
  attach_mode_ = TcAttachMode::kTcx;
  RestartService();
  ASSERT_EQ(manager_->tc_attach_mode(), TcAttachMode::kTcx);
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());
  EXPECT_THAT(Hook(ifindex, TcDirection::kIngress),
              ::testing::ElementsAre(manager_->bpf().program_ids().from_container));
  EXPECT_EQ(*QueryTcProgram(ifindex, TcDirection::kIngress), 0u);  // no clsact filter
  EXPECT_EQ(LinkPins(bpf_dir_.path()), our_pins);

  for (TcAttachMode mode : {TcAttachMode::kClsact, TcAttachMode::kTcx}) {
    SCOPED_TRACE(TcAttachModeName(mode));
    attach_mode_ = mode;
    RestartService();
    ASSERT_EQ(manager_->tc_attach_mode(), mode);
    ASSERT_EQ(manager_->restore_summary().readopted.size(), 1u);
    const ProgramIds programs = manager_->bpf().program_ids();
    EXPECT_THAT(Hook(ifindex, TcDirection::kIngress), ::testing::ElementsAre(programs.from_container));
    EXPECT_THAT(Hook(ifindex, TcDirection::kEgress), ::testing::ElementsAre(programs.to_container));
    const bool clsact = mode == TcAttachMode::kClsact;
    EXPECT_EQ(*QueryTcProgram(ifindex, TcDirection::kIngress), clsact ? programs.from_container : 0u);
    EXPECT_EQ(LinkPins(bpf_dir_.path()), clsact ? std::vector<std::string>{} : our_pins);
    v1::Endpoint endpoint;
    ASSERT_TRUE(Get("ctr-a", &endpoint).ok());
    EXPECT_EQ(endpoint.state(), v1::ATTACHMENT_STATE_ATTACHED);
    const uint64_t before = endpoint.counters().from_pod_packets();
    SendTraffic(pod_a_, 5);
    ASSERT_TRUE(Get("ctr-a", &endpoint).ok());
    EXPECT_GE(endpoint.counters().from_pod_packets(), before + 5);
  }

  bool deleted = false;
  ASSERT_TRUE(Delete("ctr-a", &deleted).ok());
  EXPECT_THAT(Hook(ifindex, TcDirection::kIngress), ::testing::IsEmpty());
  EXPECT_THAT(Hook(ifindex, TcDirection::kEgress), ::testing::IsEmpty());
  EXPECT_THAT(LinkPins(bpf_dir_.path()), ::testing::IsEmpty());
}

// The CNI asks for TCX only for pods whose chained plugins need the veth's
// qdiscs (egress bandwidth limits); other endpoints on the same node keep
// the cheaper clsact filters, and each keeps its mode across restarts.
TEST_F(DatapathServiceTest, EndpointsAskingForTcxGetLinksOthersTheNodeDefault) {
  if (!KernelSupportsTcx()) GTEST_SKIP() << "kernel without TCX";
  ScopedVethPair pod_b("b", "10.251.0.6/30");
  ASSERT_TRUE(pod_b.ok());
  ASSERT_EQ(manager_->tc_attach_mode(), TcAttachMode::kClsact);  // the default
  v1::CreateEndpointResponse created_a;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created_a).ok());
  EXPECT_EQ(created_a.endpoint().tc_attach_mode(), v1::TC_ATTACH_MODE_CLSACT);
  v1::CreateEndpointRequest request_b = CreateRequest("ctr-b", pod_b);
  request_b.set_tc_attach_mode(v1::TC_ATTACH_MODE_TCX);
  v1::CreateEndpointResponse created_b;
  grpc::Status status = Create(request_b, &created_b);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(created_b.endpoint().tc_attach_mode(), v1::TC_ATTACH_MODE_TCX);

  const int ifindex_a = static_cast<int>(pod_a_.host_ifindex());
  const int ifindex_b = static_cast<int>(pod_b.host_ifindex());
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "created" : "after a restart");
    const ProgramIds programs = manager_->bpf().program_ids();
    EXPECT_EQ(*QueryTcProgram(ifindex_a, TcDirection::kIngress), programs.from_container);
    EXPECT_EQ(*QueryTcProgram(ifindex_b, TcDirection::kIngress), 0u);
    EXPECT_THAT(Hook(ifindex_b, TcDirection::kIngress), ::testing::ElementsAre(programs.from_container));
    EXPECT_THAT(Hook(ifindex_b, TcDirection::kEgress), ::testing::ElementsAre(programs.to_container));
    EXPECT_EQ(LinkPins(bpf_dir_.path()),
              (std::vector<std::string>{absl::StrCat(ifindex_b, "-egress"),
                                        absl::StrCat(ifindex_b, "-ingress")}));
    v1::Endpoint b;
    ASSERT_TRUE(Get("ctr-b", &b).ok());
    EXPECT_EQ(b.state(), v1::ATTACHMENT_STATE_ATTACHED);
    EXPECT_EQ(b.tc_attach_mode(), v1::TC_ATTACH_MODE_TCX);
    RestartService();
  }
  bool deleted = false;
  ASSERT_TRUE(Delete("ctr-b", &deleted).ok());
  EXPECT_THAT(Hook(ifindex_b, TcDirection::kIngress), ::testing::IsEmpty());
  EXPECT_THAT(LinkPins(bpf_dir_.path()), ::testing::IsEmpty());
}

// A veth deleted while the service is down takes its TCX links' attachment
// with it, but not their pins: the restart that finds the endpoint stale
// removes them, and a link pinned for an interface no endpoint has goes too.
TEST_F(DatapathServiceTest, RestartRemovesTcxPinsOfGoneInterfacesAndUnknownLinks) {
  if (!KernelSupportsTcx()) GTEST_SKIP() << "kernel without TCX";
  ScopedVethPair pod_b("b", "10.251.0.6/30");
  ASSERT_TRUE(pod_b.ok());
  attach_mode_ = TcAttachMode::kTcx;
  RestartService();
  ASSERT_EQ(manager_->tc_attach_mode(), TcAttachMode::kTcx);
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());
  // A link of ours on pod_b that no endpoint knows of, as if a crash came
  // between attaching and registering.
  absl::StatusOr<int> stray = CreateTcxLink(manager_->bpf().from_container_fd(),
                                            static_cast<int>(pod_b.host_ifindex()),
                                            TcDirection::kIngress);
  ASSERT_TRUE(stray.ok()) << stray.status();
  const std::string stray_pin =
      absl::StrCat(bpf_dir_.path(), "/links/", pod_b.host_ifindex(), "-ingress");
  ASSERT_EQ(bpf_obj_pin(*stray, stray_pin.c_str()), 0);
  close(*stray);
  ASSERT_EQ(LinkPins(bpf_dir_.path()).size(), 3u);

  StopService();
  pod_a_.DeleteLink();
  StartService();
  EXPECT_EQ(manager_->restore_summary().removed_stale.size(), 1u);
  EXPECT_THAT(LinkPins(bpf_dir_.path()), ::testing::IsEmpty());
  EXPECT_THAT(Hook(static_cast<int>(pod_b.host_ifindex()), TcDirection::kIngress),
              ::testing::IsEmpty());
}

// Frames cut inside the IP header cannot be fed to BPF_PROG_TEST_RUN (the
// kernel refuses them), so the unit tests cannot cover them; a pod can still
// send them with a raw socket. Send real ones across the veth.
TEST_F(DatapathServiceTest, FramesCutInsideTheIpHeaderAreDroppedAsTruncated) {
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());
  std::vector<uint8_t> ipv4 = BuildUdpFrame(kOtherHostMac, "10.251.0.2", "10.251.0.1", 64);
  ipv4.resize(14 + 12);
  std::vector<uint8_t> ipv6(ipv4.begin(), ipv4.begin() + 14);
  ipv6[12] = 0x86;
  ipv6[13] = 0xdd;
  ipv6.push_back(0x60);
  ipv6.resize(14 + 30, 0);
  constexpr int kCount = 5;
  ASSERT_TRUE(SendFrames(pod_a_.netns(), pod_a_.peer_name(), ipv4, kCount).ok());
  ASSERT_TRUE(SendFrames(pod_a_.netns(), pod_a_.peer_name(), ipv6, kCount).ok());
  absl::StatusOr<std::vector<PacketCount>> metrics = manager_->Metrics();
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ((*metrics)[EBPFCNI_METRIC_DROP(EBPFCNI_DROP_TRUNCATED_L3)].packets,
            static_cast<uint64_t>(2 * kCount));
}

TEST_F(DatapathServiceTest, RestartPutsBackAPolicyWhosePinnedMapWasLost) {
  v1::CreateEndpointRequest request = CreateRequest("ctr-a", pod_a_);
  request.mutable_policy()->set_ingress_isolated(true);
  v1::PolicyRule* rule = request.mutable_policy()->add_rules();
  rule->set_direction(v1::POLICY_DIRECTION_INGRESS);
  rule->set_peer_identity(2000);
  rule->set_protocol(6);
  rule->set_port(443);
  rule->set_action(v1::POLICY_ACTION_ALLOW);
  rule->set_rule_id(9);
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(request, &created).ok());
  EXPECT_TRUE(created.endpoint().policy().ingress_isolated());

  // As after an upgrade that changed the policy map's layout: the pin is
  // gone and the next run starts with an empty policy map.
  StopService();
  ASSERT_EQ(unlink((bpf_dir_.path() + "/policy_maps").c_str()), 0);
  StartService();

  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(10));
  v1::DumpPolicyRequest dump_request;
  *dump_request.mutable_key() = Key("ctr-a");
  v1::DumpPolicyResponse dump;
  grpc::Status status = stub_->DumpPolicy(&context, dump_request, &dump);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(dump.policy().installed());
  EXPECT_TRUE(dump.policy().ingress_isolated());
  ASSERT_EQ(dump.entries_size(), 1);
  EXPECT_EQ(dump.entries(0).rule().rule_id(), 9u);
  EXPECT_EQ(dump.entries(0).rule().port(), 443u);
}

TEST_F(DatapathServiceTest, RejectsRequestsWithActionableErrors) {
  v1::CreateEndpointResponse response;
  v1::CreateEndpointRequest request = CreateRequest("ctr-a", pod_a_);
  request.mutable_key()->clear_container_id();
  EXPECT_EQ(Create(request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  request = CreateRequest("ctr-a", pod_a_);
  request.set_host_ifindex(0);
  EXPECT_EQ(Create(request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  request = CreateRequest("ctr-a", pod_a_);
  request.set_host_ifindex(0x7ffffff0);  // no such interface
  grpc::Status status = Create(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("ifindex"), std::string::npos);

  request = CreateRequest("ctr-a", pod_a_);
  request.set_host_interface_name("not-this-one");
  status = Create(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find(pod_a_.host_name()), std::string::npos);

  request = CreateRequest("ctr-a", pod_a_);
  request.add_addresses("10.0.0.1/24");
  EXPECT_EQ(Create(request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Nothing of the rejected requests was kept or attached.
  EXPECT_EQ(CountTcFilters(pod_a_.host_name()).ingress, 0);
  v1::Endpoint endpoint;
  EXPECT_EQ(Get("ctr-a", &endpoint).error_code(), grpc::StatusCode::NOT_FOUND);

  // Another endpoint cannot take an interface that is in use.
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &response).ok());
  status = Create(CreateRequest("ctr-other", pod_a_), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(status.error_message().find("ctr-a"), std::string::npos);
}

// Port ranges over the wire: what a client gets back for bad ranges, and a
// good one comes back from DumpPolicy as the range it sent.
TEST_F(DatapathServiceTest, PortRangesAreValidatedAndDumpedOverGrpc) {
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());
  auto replace = [&](uint32_t protocol, uint32_t port, uint32_t end_port) {
    v1::ReplaceEndpointPolicyRequest request;
    *request.mutable_key() = Key("ctr-a");
    request.mutable_policy()->set_ingress_isolated(true);
    v1::PolicyRule* rule = request.mutable_policy()->add_rules();
    rule->set_direction(v1::POLICY_DIRECTION_INGRESS);
    rule->set_peer_identity(3000);
    rule->set_protocol(protocol);
    rule->set_port(port);
    rule->set_end_port(end_port);
    rule->set_action(v1::POLICY_ACTION_ALLOW);
    rule->set_rule_id(5);
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    v1::ReplaceEndpointPolicyResponse response;
    return stub_->ReplaceEndpointPolicy(&context, request, &response);
  };
  struct Bad {
    uint32_t protocol, port, end_port;
    const char* message;
  };
  for (const Bad& bad : {Bad{6, 90, 80, "end_port 80 is below port 90"},
                         Bad{0, 80, 90, "needs a protocol"},
                         Bad{6, 0, 90, "non-zero port"},
                         Bad{6, 80, 70000, "end_port 70000 is out of range"}}) {
    grpc::Status status = replace(bad.protocol, bad.port, bad.end_port);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad.message;
    EXPECT_NE(status.error_message().find(bad.message), std::string::npos)
        << status.error_message();
    EXPECT_NE(status.error_message().find("policy.rules[0]"), std::string::npos)
        << status.error_message();
  }
  grpc::Status status = replace(6, 1, 65535);
  ASSERT_TRUE(status.ok()) << status.error_message();
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(10));
  v1::DumpPolicyRequest request;
  *request.mutable_key() = Key("ctr-a");
  v1::DumpPolicyResponse dump;
  ASSERT_TRUE(stub_->DumpPolicy(&context, request, &dump).ok());
  ASSERT_EQ(dump.entries_size(), 1);
  EXPECT_EQ(dump.entries(0).rule().port(), 1u);
  EXPECT_EQ(dump.entries(0).rule().end_port(), 65535u);
  EXPECT_EQ(dump.entries(0).rule().rule_id(), 5u);
  EXPECT_EQ(dump.policy().rule_count(), 1u);
}

TEST_F(DatapathServiceTest, BatchReplaceReportsEachItemInRequestOrder) {
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());
  auto add_item = [&](v1::ReplaceEndpointPoliciesRequest& request, const std::string& container,
                      uint32_t end_port) {
    v1::ReplaceEndpointPolicyRequest* item = request.add_items();
    *item->mutable_key() = Key(container);
    item->mutable_policy()->set_ingress_isolated(true);
    v1::PolicyRule* rule = item->mutable_policy()->add_rules();
    rule->set_direction(v1::POLICY_DIRECTION_INGRESS);
    rule->set_peer_identity(3000);
    rule->set_protocol(6);
    rule->set_port(80);
    rule->set_end_port(end_port);
    rule->set_action(v1::POLICY_ACTION_ALLOW);
    rule->set_rule_id(5);
  };
  v1::ReplaceEndpointPoliciesRequest request;
  add_item(request, "ctr-missing", 0);
  add_item(request, "ctr-a", 90);
  add_item(request, "ctr-unparsable", 70000);
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(10));
  v1::ReplaceEndpointPoliciesResponse response;
  grpc::Status status = stub_->ReplaceEndpointPolicies(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 3);
  EXPECT_EQ(response.results(0).key().container_id(), "ctr-missing");
  EXPECT_EQ(response.results(0).code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(response.results(0).message().find("ctr-missing"), std::string::npos);
  EXPECT_EQ(response.results(1).key().container_id(), "ctr-a");
  EXPECT_EQ(response.results(1).code(), grpc::StatusCode::OK) << response.results(1).message();
  EXPECT_TRUE(response.results(1).policy().installed());
  EXPECT_EQ(response.results(1).policy().rule_count(), 1u);
  EXPECT_EQ(response.results(2).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(response.results(2).message().find("items[2].policy.rules[0]"), std::string::npos)
      << response.results(2).message();

  grpc::ClientContext dump_context;
  SetDeadline(dump_context, std::chrono::seconds(10));
  v1::DumpPolicyRequest dump_request;
  *dump_request.mutable_key() = Key("ctr-a");
  v1::DumpPolicyResponse dump;
  ASSERT_TRUE(stub_->DumpPolicy(&dump_context, dump_request, &dump).ok());
  ASSERT_EQ(dump.entries_size(), 1);
  EXPECT_EQ(dump.entries(0).rule().port(), 80u);
  EXPECT_EQ(dump.entries(0).rule().end_port(), 90u);
}

TEST_F(DatapathServiceTest, InterfaceGoneIsReportedAndDeleteStillSucceeds) {
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());
  const uint32_t ifindex = pod_a_.host_ifindex();
  pod_a_.DeleteLink();

  v1::Endpoint endpoint;
  ASSERT_TRUE(Get("ctr-a", &endpoint).ok());
  EXPECT_EQ(endpoint.state(), v1::ATTACHMENT_STATE_INTERFACE_GONE);
  bool deleted = false;
  grpc::Status status = Delete("ctr-a", &deleted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(deleted);
  EXPECT_EQ(*manager_->bpf().EndpointForIfindex(ifindex), std::nullopt);
}

TEST_F(DatapathServiceTest, RestartRemovesEndpointsWhoseInterfaceIsGone) {
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());
  const uint32_t ifindex = pod_a_.host_ifindex();
  StopService();
  pod_a_.DeleteLink();
  StartService();

  ASSERT_EQ(manager_->restore_summary().removed_stale.size(), 1u);
  EXPECT_EQ(manager_->restore_summary().removed_stale[0].container_id, "ctr-a");
  v1::Endpoint endpoint;
  EXPECT_EQ(Get("ctr-a", &endpoint).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(*manager_->bpf().EndpointForIfindex(ifindex), std::nullopt);
}

TEST_F(DatapathServiceTest, RestartDropsMapEntriesNoEndpointOwns) {
  // What a crash between writing the map and the registry leaves behind.
  const uint32_t orphan_ifindex = 0x7ffffff1;
  ebpfcni_endpoint_info orphan{};
  orphan.endpoint_id = 4242;
  ASSERT_EQ(bpf_map_update_elem(manager_->bpf().ifindex_map_fd(), &orphan_ifindex, &orphan,
                                BPF_ANY),
            0);
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());

  RestartService();
  EXPECT_EQ(*manager_->bpf().EndpointForIfindex(orphan_ifindex), std::nullopt);
  // The real endpoint's entry stays.
  EXPECT_EQ(*manager_->bpf().EndpointForIfindex(pod_a_.host_ifindex()),
            std::optional<uint32_t>(created.endpoint().endpoint_id()));
}

TEST_F(DatapathServiceTest, RecreatingOnANewInterfaceMovesTheEndpoint) {
  ScopedVethPair pod_b{"b", "10.251.0.6/30"};
  ASSERT_TRUE(pod_b.ok());
  v1::CreateEndpointResponse first;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &first).ok());
  // A retried ADD that recreated the veth: same key, other interface.
  v1::CreateEndpointResponse second;
  grpc::Status status = Create(CreateRequest("ctr-a", pod_b), &second);
  ASSERT_TRUE(status.ok()) << status.error_message();

  EXPECT_EQ(second.endpoint().endpoint_id(), first.endpoint().endpoint_id());
  EXPECT_EQ(second.endpoint().host_ifindex(), pod_b.host_ifindex());
  EXPECT_EQ(CountTcFilters(pod_a_.host_name()).ingress, 0);
  EXPECT_EQ(CountTcFilters(pod_b.host_name()).ingress, 1);
  EXPECT_EQ(CountTcFilters(pod_b.host_name()).egress, 1);
  EXPECT_EQ(*manager_->bpf().EndpointForIfindex(pod_a_.host_ifindex()), std::nullopt);
  EXPECT_EQ(*manager_->bpf().EndpointForIfindex(pod_b.host_ifindex()),
            std::optional<uint32_t>(first.endpoint().endpoint_id()));
}

TEST_F(DatapathServiceTest, GarbageCollectDeletesOnlyEndpointsNotListed) {
  ScopedVethPair pod_b{"b", "10.251.0.6/30"};
  ASSERT_TRUE(pod_b.ok());
  v1::CreateEndpointResponse created;
  ASSERT_TRUE(Create(CreateRequest("ctr-a", pod_a_), &created).ok());
  ASSERT_TRUE(Create(CreateRequest("ctr-b", pod_b), &created).ok());
  EXPECT_EQ(CountTcFilters(pod_b.host_name()).ingress, 1);

  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(10));
  v1::GarbageCollectEndpointsRequest request;
  *request.add_valid_endpoints() = Key("ctr-a");
  v1::GarbageCollectEndpointsResponse response;
  grpc::Status status = stub_->GarbageCollectEndpoints(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.deleted_size(), 1);
  EXPECT_EQ(response.deleted(0).container_id(), "ctr-b");

  EXPECT_EQ(CountTcFilters(pod_b.host_name()).ingress, 0);
  EXPECT_EQ(CountTcFilters(pod_a_.host_name()).ingress, 1);
  grpc::ClientContext list_context;
  SetDeadline(list_context, std::chrono::seconds(10));
  v1::ListEndpointsResponse list;
  ASSERT_TRUE(stub_->ListEndpoints(&list_context, v1::ListEndpointsRequest(), &list).ok());
  ASSERT_EQ(list.endpoints_size(), 1);
  EXPECT_EQ(list.endpoints(0).key().container_id(), "ctr-a");
  EXPECT_EQ(list.endpoints(0).state(), v1::ATTACHMENT_STATE_ATTACHED);
}

TEST(DatapathStartupTest, RefusesABpfDirOutsideBpffs) {
  ScopedTempDir state{"nobpffs"};
  EndpointManagerOptions options;
  options.bpf_dir = state.path() + "/bpf";  // /tmp is not bpffs
  options.state_dir = state.path();
  absl::StatusOr<std::unique_ptr<EndpointManager>> manager = EndpointManager::Start(options);
  ASSERT_FALSE(manager.ok());
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(manager.status().message().find("mount -t bpf"), std::string::npos);
}

}  // namespace
}  // namespace ebpfcni::datapath
