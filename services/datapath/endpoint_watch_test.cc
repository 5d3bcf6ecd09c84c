// WatchEndpoints: snapshot, SNAPSHOT_DONE, then every creation, change and
// deletion in order, for several watchers at once; a watcher that does not
// read never holds up endpoint operations and is cut off with
// RESOURCE_EXHAUSTED instead. Real kernel (veths, TC), real gRPC on a unix
// socket.
#include "services/datapath/endpoint_watch.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/grpc/channel.h"
#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "services/datapath/datapath_service.h"
#include "services/datapath/endpoint_manager.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

namespace v1 = ::ebpfcni::datapath::v1;
using testing::ScopedBpfDir;
using testing::ScopedTempDir;
using testing::ScopedVethPair;

// --- the queue on its own ----------------------------------------------------

EndpointChange ChangeWithIdentity(uint32_t identity) {
  EndpointChange change;
  change.endpoint.record.identity = identity;
  return change;
}

TEST(EndpointWatchQueueTest, DeliversInOrderThenTimesOut) {
  EndpointWatch watch({}, 4);
  watch.Push(ChangeWithIdentity(1));
  watch.Push(ChangeWithIdentity(2));
  for (uint32_t expected : {1u, 2u}) {
    absl::StatusOr<std::optional<EndpointChange>> next = watch.Next(absl::Seconds(1));
    ASSERT_TRUE(next.ok()) << next.status();
    ASSERT_TRUE(next->has_value());
    EXPECT_EQ((*next)->endpoint.record.identity, expected);
  }
  absl::StatusOr<std::optional<EndpointChange>> none = watch.Next(absl::Milliseconds(20));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(EndpointWatchQueueTest, OverflowEndsTheWatchInsteadOfLosingOneChange) {
  EndpointWatch watch({}, 3);
  for (uint32_t i = 1; i <= 3; ++i) watch.Push(ChangeWithIdentity(i));
  EXPECT_FALSE(watch.overflowed());
  watch.Push(ChangeWithIdentity(4));  // one too many
  EXPECT_TRUE(watch.overflowed());
  // Nothing more is delivered: a follower that missed a change must start
  // over, not continue with a gap.
  absl::StatusOr<std::optional<EndpointChange>> next = watch.Next(absl::Seconds(1));
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(next.status().message().find("watch again"), std::string::npos);
}

// --- through the service -------------------------------------------------------

class WatchEndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pod_a_.ok() && pod_b_.ok()) << "could not create veths";
    EndpointManagerOptions options;
    options.bpf_dir = bpf_dir_.path();
    options.state_dir = state_dir_.path();
    options.map_host_addresses = false;
    absl::StatusOr<std::unique_ptr<EndpointManager>> manager = EndpointManager::Start(options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = *std::move(manager);
    service_ = std::make_unique<DatapathServiceImpl>(manager_.get(), nullptr, kCapacity);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path_, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::DatapathService::NewStub(MakeChannel(socket_path_));
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
    service_.reset();
    manager_.reset();
  }

  static v1::EndpointKey Key(const std::string& container) {
    v1::EndpointKey key;
    key.set_container_id(container);
    key.set_interface_name("eth0");
    return key;
  }

  grpc::Status Create(const std::string& container, const ScopedVethPair& pod,
                      const std::string& address, uint32_t identity) {
    v1::CreateEndpointRequest request;
    *request.mutable_key() = Key(container);
    request.set_host_ifindex(pod.host_ifindex());
    request.add_addresses(address);
    request.set_pod_namespace("ns");
    request.set_pod_name(container);
    request.set_identity(identity);
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    v1::CreateEndpointResponse response;
    return stub_->CreateEndpoint(&context, request, &response);
  }

  grpc::Status SetIdentity(const std::string& container, uint32_t identity) {
    v1::SetEndpointIdentityRequest request;
    *request.mutable_key() = Key(container);
    request.set_identity(identity);
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    v1::SetEndpointIdentityResponse response;
    return stub_->SetEndpointIdentity(&context, request, &response);
  }

  grpc::Status Isolate(const std::string& container) {
    v1::ReplaceEndpointPolicyRequest request;
    *request.mutable_key() = Key(container);
    request.mutable_policy()->set_ingress_isolated(true);
    v1::PolicyRule* rule = request.mutable_policy()->add_rules();
    rule->set_direction(v1::POLICY_DIRECTION_INGRESS);
    rule->set_peer_identity(1000);
    rule->set_protocol(6);
    rule->set_port(80);
    rule->set_action(v1::POLICY_ACTION_ALLOW);
    rule->set_rule_id(7);
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    v1::ReplaceEndpointPolicyResponse response;
    return stub_->ReplaceEndpointPolicy(&context, request, &response);
  }

  grpc::Status Delete(const std::string& container) {
    v1::DeleteEndpointRequest request;
    *request.mutable_key() = Key(container);
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    v1::DeleteEndpointResponse response;
    return stub_->DeleteEndpoint(&context, request, &response);
  }

  // One open WatchEndpoints stream.
  struct Watcher {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::WatchEndpointsResponse>> reader;
  };

  std::unique_ptr<Watcher> StartWatch(v1::DatapathService::Stub* stub = nullptr) {
    auto watcher = std::make_unique<Watcher>();
    SetDeadline(watcher->context, std::chrono::seconds(60));
    watcher->reader = (stub != nullptr ? stub : stub_.get())
                          ->WatchEndpoints(&watcher->context, v1::WatchEndpointsRequest());
    return watcher;
  }

  // Reads messages up to and including SNAPSHOT_DONE; returns the snapshot.
  static std::vector<v1::Endpoint> ReadSnapshot(Watcher& watcher) {
    std::vector<v1::Endpoint> snapshot;
    v1::WatchEndpointsResponse message;
    for (int i = 0; i < 1000 && watcher.reader->Read(&message); ++i) {
      if (message.change() == v1::ENDPOINT_CHANGE_SNAPSHOT_DONE) return snapshot;
      EXPECT_EQ(message.change(), v1::ENDPOINT_CHANGE_SNAPSHOT);
      snapshot.push_back(message.endpoint());
    }
    ADD_FAILURE() << "no SNAPSHOT_DONE";
    return snapshot;
  }

  static constexpr size_t kCapacity = 16;
  ScopedBpfDir bpf_dir_{"watch"};
  ScopedTempDir state_dir_{"watch-state"};
  std::string socket_path_ = state_dir_.path() + "/datapath.sock";
  ScopedVethPair pod_a_{"wa", "10.252.0.2/30"};
  ScopedVethPair pod_b_{"wb", "10.252.0.6/30"};
  std::unique_ptr<EndpointManager> manager_;
  std::unique_ptr<DatapathServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::DatapathService::Stub> stub_;
};

TEST_F(WatchEndpointsTest, SnapshotThenEveryChangeInOrderForEveryWatcher) {
  ASSERT_TRUE(Create("ctr-a", pod_a_, "10.252.0.2", 1000).ok());

  constexpr int kWatchers = 4;
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kWatchers; ++i) {
    watchers.push_back(StartWatch());
    std::vector<v1::Endpoint> snapshot = ReadSnapshot(*watchers.back());
    ASSERT_EQ(snapshot.size(), 1u);
    EXPECT_EQ(snapshot[0].key().container_id(), "ctr-a");
    EXPECT_EQ(snapshot[0].identity(), 1000u);
    EXPECT_EQ(snapshot[0].state(), v1::ATTACHMENT_STATE_ATTACHED);
    EXPECT_FALSE(snapshot[0].has_counters()) << "watch messages carry no counters";
  }

  ASSERT_TRUE(Create("ctr-b", pod_b_, "10.252.0.6", 0).ok());  // CREATED, init
  ASSERT_TRUE(SetIdentity("ctr-b", 2000).ok());                 // UPDATED identity
  ASSERT_TRUE(SetIdentity("ctr-b", 2000).ok());                 // no change: nothing
  ASSERT_TRUE(Isolate("ctr-a").ok());                           // UPDATED policy
  ASSERT_TRUE(Create("ctr-a", pod_a_, "10.252.0.2", 0).ok());   // idempotent ADD: nothing
  ASSERT_TRUE(Delete("ctr-b").ok());                            // DELETED

  struct Expected {
    v1::EndpointChange change;
    std::string container;
    uint32_t identity;
    bool isolated;
  };
  const std::vector<Expected> expected = {
      {v1::ENDPOINT_CHANGE_CREATED, "ctr-b", 0, false},
      {v1::ENDPOINT_CHANGE_UPDATED, "ctr-b", 2000, false},
      {v1::ENDPOINT_CHANGE_UPDATED, "ctr-a", 1000, true},
      {v1::ENDPOINT_CHANGE_DELETED, "ctr-b", 2000, false},
  };
  for (int w = 0; w < kWatchers; ++w) {
    SCOPED_TRACE("watcher " + std::to_string(w));
    for (const Expected& want : expected) {
      v1::WatchEndpointsResponse message;
      ASSERT_TRUE(watchers[w]->reader->Read(&message));
      EXPECT_EQ(message.change(), want.change) << message.ShortDebugString();
      EXPECT_EQ(message.endpoint().key().container_id(), want.container);
      EXPECT_EQ(message.endpoint().identity(), want.identity);
      EXPECT_EQ(message.endpoint().policy().ingress_isolated(), want.isolated);
      if (want.isolated) {
        EXPECT_EQ(message.endpoint().policy().rule_count(), 1u);
      }
    }
  }
  // Nothing else was sent: the next change is the next message.
  ASSERT_TRUE(SetIdentity("ctr-a", 3000).ok());
  for (int w = 0; w < kWatchers; ++w) {
    v1::WatchEndpointsResponse message;
    ASSERT_TRUE(watchers[w]->reader->Read(&message));
    EXPECT_EQ(message.change(), v1::ENDPOINT_CHANGE_UPDATED);
    EXPECT_EQ(message.endpoint().identity(), 3000u);
  }

  // A new watcher's snapshot is the current state.
  std::unique_ptr<Watcher> late = StartWatch();
  std::vector<v1::Endpoint> snapshot = ReadSnapshot(*late);
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].identity(), 3000u);
  EXPECT_TRUE(snapshot[0].policy().ingress_isolated());

  for (auto& watcher : watchers) watcher->context.TryCancel();
  late->context.TryCancel();
}

TEST_F(WatchEndpointsTest, WatchersAreForgottenWhenTheirStreamEnds) {
  {
    std::unique_ptr<Watcher> watcher = StartWatch();
    ReadSnapshot(*watcher);
    EXPECT_EQ(manager_->watcher_count(), 1u);
    watcher->context.TryCancel();
  }
  // The handler notices the cancellation within its poll interval.
  for (int i = 0; i < 100 && manager_->watcher_count() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(manager_->watcher_count(), 0u);
}

// A pod torn down without DEL: its veth vanishes, and watchers hear of it
// from the link monitor, not only on the next call about the endpoint.
TEST_F(WatchEndpointsTest, InterfaceThatDisappearsIsReportedAsGone) {
  ASSERT_TRUE(Create("ctr-b", pod_b_, "10.252.0.6", 2000).ok());
  std::unique_ptr<Watcher> watcher = StartWatch();
  ASSERT_EQ(ReadSnapshot(*watcher).size(), 1u);
  pod_b_.DeleteLink();
  v1::WatchEndpointsResponse message;
  ASSERT_TRUE(watcher->reader->Read(&message));  // bounded by the stream deadline
  EXPECT_EQ(message.change(), v1::ENDPOINT_CHANGE_UPDATED);
  EXPECT_EQ(message.endpoint().key().container_id(), "ctr-b");
  EXPECT_EQ(message.endpoint().state(), v1::ATTACHMENT_STATE_INTERFACE_GONE);
  watcher->context.TryCancel();
}

// A watcher that stops reading: endpoint operations go on, its queue
// overflows, and it is told so rather than fed a stream with a gap.
TEST_F(WatchEndpointsTest, SlowWatcherNeverBlocksOperationsAndIsCutOff) {
  ASSERT_TRUE(Create("ctr-a", pod_a_, "10.252.0.2", 1000).ok());
  std::shared_ptr<EndpointWatch> stuck = manager_->Watch(kCapacity);
  ASSERT_EQ(stuck->snapshot().size(), 1u);

  constexpr int kChanges = 200;  // far more than kCapacity
  for (int i = 0; i < kChanges; ++i) {
    ASSERT_TRUE(SetIdentity("ctr-a", 1000 + 1 + i % 2).ok()) << "change " << i;
  }
  EXPECT_TRUE(stuck->overflowed());
  absl::StatusOr<std::optional<EndpointChange>> next = stuck->Next(absl::Seconds(1));
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), absl::StatusCode::kResourceExhausted);
  manager_->Unwatch(stuck);

  // The same through gRPC: a client that does not read while large
  // messages pile up beyond the transport's buffers gets RESOURCE_EXHAUSTED
  // once it reads again, and a new watch starts from a fresh snapshot.
  // Without BDP probing the client's flow-control window stays at its
  // initial size while the application does not read, so the server's
  // writes really stop (as with a slow client on a slow link).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  std::unique_ptr<v1::DatapathService::Stub> slow_stub = v1::DatapathService::NewStub(
      grpc::CreateCustomChannel("unix:" + socket_path_, grpc::InsecureChannelCredentials(), args));
  std::unique_ptr<Watcher> slow = StartWatch(slow_stub.get());
  ReadSnapshot(*slow);
  // Many addresses make each message large, so the stream's flow-control
  // window fills and the server's writes stop while changes keep coming.
  v1::CreateEndpointRequest big;
  *big.mutable_key() = Key("ctr-a");
  big.set_host_ifindex(pod_a_.host_ifindex());
  for (int i = 0; i < 200; ++i) big.add_addresses("fd00:252::" + std::to_string(i + 1));
  big.set_pod_name(std::string(20000, 'p'));  // ~23 KB per message, 4.6 MB in all
  {
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    v1::CreateEndpointResponse response;
    ASSERT_TRUE(stub_->CreateEndpoint(&context, big, &response).ok());
  }
  for (int i = 0; i < kChanges; ++i) {
    ASSERT_TRUE(SetIdentity("ctr-a", 2000 + i).ok()) << "change " << i;
  }
  v1::WatchEndpointsResponse message;
  int read = 0;
  while (read <= kChanges && slow->reader->Read(&message)) ++read;
  if (read > kChanges) slow->context.TryCancel();  // got everything: not cut off
  grpc::Status status = slow->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << "read " << read << " messages; " << status.error_message();
  EXPECT_LT(read, kChanges + 1);

  std::unique_ptr<Watcher> again = StartWatch();
  std::vector<v1::Endpoint> snapshot = ReadSnapshot(*again);
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].identity(), 2000u + kChanges - 1);
  again->context.TryCancel();
}

}  // namespace
}  // namespace ebpfcni::datapath
