// Three ebpf-cni-identity processes over one real etcd, clients balancing
// over them: concurrent allocations through different replicas agree, a
// replica killed with SIGKILL mid-run costs no call (clients fail over) and
// no consistency, and the survivors' watch streams carry every identity.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <absl/strings/str_cat.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/grpc/channel.h"
#include "ebpfcni/identity/v1/identity.grpc.pb.h"
#include "services/identity/etcd/testing/etcd_test_server.h"

namespace ebpfcni::identity {
namespace {

namespace v1 = ebpfcni::identity::v1;
using testsupport::ChildProcess;
using testsupport::EtcdTestServer;

constexpr int kReplicas = 3;

std::string LabelsText(const v1::Identity& identity) {
  std::string text;
  for (const auto& label : identity.labels()) absl::StrAppend(&text, label.source(), ":", label.key(), "=", label.value(), ";");
  return text;
}

// Follows one replica's WatchIdentities stream in a thread, remembering
// every identity it has announced (and forgetting deleted ones).
class WatchRecorder {
 public:
  explicit WatchRecorder(const std::string& socket) : stub_(v1::IdentityService::NewStub(MakeChannel(socket))) {
    thread_ = std::thread([this] {
      v1::WatchIdentitiesRequest request;
      auto reader = stub_->WatchIdentities(&context_, request);
      v1::WatchIdentitiesResponse event;
      while (reader->Read(&event)) {
        std::lock_guard<std::mutex> lock(mu_);
        if (event.kind() == v1::CHANGE_KIND_DELETE) {
          seen_.erase(event.identity().id());
        } else if (event.kind() != v1::CHANGE_KIND_SNAPSHOT_DONE && !event.identity().reserved()) {
          seen_[event.identity().id()] = LabelsText(event.identity());
        }
      }
      reader->Finish();
    });
  }
  ~WatchRecorder() {
    context_.TryCancel();
    thread_.join();
  }
  std::map<uint32_t, std::string> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  std::unique_ptr<v1::IdentityService::Stub> stub_;
  grpc::ClientContext context_;
  std::mutex mu_;
  std::map<uint32_t, std::string> seen_;
  std::thread thread_;
};

class IdentityReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = EtcdTestServer::Start("replicas");
    ASSERT_TRUE(server.ok()) << server.status();
    etcd_ = std::move(*server);
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("ebpfcni-replicas-", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    for (int i = 0; i < kReplicas; ++i) {
      sockets_.push_back((dir_ / absl::StrCat("r", i, ".sock")).string());
      auto replica = ChildProcess::Start(
          {EBPFCNI_IDENTITY_BINARY, "--store=etcd", "--etcd_endpoints=" + etcd_->endpoint(),
           absl::StrCat("--etcd_prefix=/ebpfcni-replica-test-", getpid(), "/"), "--socket=" + sockets_[i],
           "--state_dir=" + (dir_ / absl::StrCat("state", i)).string(), "--lease_ttl=5s", "--node_ttl=3s", "--gc_interval=1h"},
          (dir_ / absl::StrCat("r", i, ".log")).string());
      ASSERT_TRUE(replica.ok()) << replica.status();
      replicas_.push_back(std::move(*replica));
    }
    for (int i = 0; i < kReplicas; ++i) ASSERT_TRUE(WaitServing(sockets_[i])) << "replica " << i << " not serving";
  }

  void TearDown() override {
    replicas_.clear();  // SIGKILL + reap
    etcd_.reset();
    std::filesystem::remove_all(dir_);
  }

  static bool WaitServing(const std::string& socket) {
    auto stub = v1::IdentityService::NewStub(MakeChannel(socket));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      grpc::ClientContext context;
      SetDeadline(context, std::chrono::milliseconds(500));
      v1::ListIdentitiesResponse response;
      if (stub->ListIdentities(&context, {}, &response).ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  std::unique_ptr<EtcdTestServer> etcd_;
  std::filesystem::path dir_;
  std::vector<std::string> sockets_;
  std::vector<ChildProcess> replicas_;
};

TEST_F(IdentityReplicaTest, ConcurrentAllocationsAgreeAcrossReplicasAndSurviveAKill) {
  std::vector<std::unique_ptr<WatchRecorder>> watches;
  for (const auto& socket : sockets_) watches.push_back(std::make_unique<WatchRecorder>(socket));

  auto channel = MakeBalancedChannel(sockets_);
  ASSERT_TRUE(channel.ok()) << channel.status();
  auto stub = v1::IdentityService::NewStub(*channel);

  constexpr int kLabelSets = 300, kCalls = 1200, kClients = 16;
  std::vector<uint32_t> ids(kCalls, 0);
  std::vector<std::string> errors(kCalls);
  std::vector<std::string> labels_of_call(kCalls);
  std::atomic<int> next{0}, done{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int call = next++; call < kCalls; call = next++) {
        int set = call % kLabelSets;
        v1::AllocateIdentityRequest request;
        auto* ns = request.add_labels();
        ns->set_key("io.kubernetes.pod.namespace");
        ns->set_value("replica-test");
        auto* app = request.add_labels();
        app->set_key("app");
        app->set_value(absl::StrCat("s", set));
        request.mutable_owner()->set_node(absl::StrCat("node", call % 7));
        request.mutable_owner()->set_endpoint(absl::StrCat("ep", call));
        grpc::ClientContext context;
        SetDeadline(context, std::chrono::seconds(20));
        v1::AllocateIdentityResponse response;
        grpc::Status status = stub->AllocateIdentity(&context, request, &response);
        if (status.ok()) {
          ids[call] = response.identity().id();
          labels_of_call[call] = LabelsText(response.identity());
        } else {
          errors[call] = absl::StrCat(status.error_code(), ": ", status.error_message());
        }
        ++done;
      }
    });
  }
  // SIGKILL one replica while calls are in flight.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (done < kCalls * 2 / 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  int done_at_kill = done;
  replicas_[2].Kill();
  for (auto& client : clients) client.join();
  EXPECT_LT(done_at_kill, kCalls) << "the kill should land mid-run";

  std::map<int, uint32_t> id_of_set;
  std::map<uint32_t, std::string> labels_of_id;
  for (int call = 0; call < kCalls; ++call) {
    ASSERT_TRUE(errors[call].empty()) << "call " << call << " failed despite failover: " << errors[call];
    int set = call % kLabelSets;
    auto [it, inserted] = id_of_set.emplace(set, ids[call]);
    EXPECT_EQ(it->second, ids[call]) << "label set " << set << " got two ids";
    auto [lit, linserted] = labels_of_id.emplace(ids[call], labels_of_call[call]);
    EXPECT_EQ(lit->second, labels_of_call[call]) << "id " << ids[call] << " given to two label sets";
  }
  EXPECT_EQ(labels_of_id.size(), static_cast<size_t>(kLabelSets));

  // Every survivor's watch carries every identity, with the same labels.
  for (int survivor = 0; survivor < 2; ++survivor) {
    std::map<uint32_t, std::string> seen;
    auto watch_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < watch_deadline) {
      seen = watches[survivor]->seen();
      if (seen == labels_of_id) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(seen, labels_of_id) << "replica " << survivor << "'s watch is incomplete";
  }
}

// One unary call with a 5 s deadline.
template <typename Request, typename Response>
grpc::Status Call(v1::IdentityService::Stub& stub,
                  grpc::Status (v1::IdentityService::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                  const Request& request, Response* response) {
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::milliseconds(5000));
  return (stub.*method)(&context, request, response);
}

TEST_F(IdentityReplicaTest, KilledReplicaKeepsTheReferencesOfAHeartbeatingNode) {
  auto first = v1::IdentityService::NewStub(MakeChannel(sockets_[0]));
  auto survivor = v1::IdentityService::NewStub(MakeChannel(sockets_[1]));
  v1::NodeHeartbeatRequest beat;
  beat.set_node("node-a");
  beat.set_ttl_seconds(3);
  v1::NodeHeartbeatResponse beat_response;
  ASSERT_TRUE(Call(*first, &v1::IdentityService::Stub::NodeHeartbeat, beat, &beat_response).ok());
  // Two endpoints of node-a reference one identity, through replica 0.
  v1::AllocateIdentityRequest allocate;
  auto* label = allocate.add_labels();
  label->set_key("app");
  label->set_value("kept");
  allocate.mutable_owner()->set_node("node-a");
  v1::AllocateIdentityResponse allocated;
  for (const char* endpoint : {"ep1", "ep2"}) {
    allocate.mutable_owner()->set_endpoint(endpoint);
    ASSERT_TRUE(Call(*first, &v1::IdentityService::Stub::AllocateIdentity, allocate, &allocated).ok());
  }
  v1::UpsertIpCacheEntryRequest upsert;
  upsert.mutable_entry()->set_prefix("10.244.1.5/32");
  upsert.mutable_entry()->set_identity(allocated.identity().id());
  upsert.mutable_entry()->set_owner_node("node-a");
  v1::UpsertIpCacheEntryResponse upserted;
  ASSERT_TRUE(Call(*first, &v1::IdentityService::Stub::UpsertIpCacheEntry, upsert, &upserted).ok());

  replicas_[0].Kill();
  // node-a heartbeats through another replica for more than twice its TTL.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(7);
  while (std::chrono::steady_clock::now() < until) {
    auto status = Call(*survivor, &v1::IdentityService::Stub::NodeHeartbeat, beat, &beat_response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(beat_response.new_session()) << "the node's session outlives the replica that started it";
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  v1::ReleaseIdentityRequest release;
  release.set_id(allocated.identity().id());
  release.mutable_owner()->set_node("node-a");
  release.mutable_owner()->set_endpoint("ep1");
  v1::ReleaseIdentityResponse released;
  ASSERT_TRUE(Call(*survivor, &v1::IdentityService::Stub::ReleaseIdentity, release, &released).ok());
  EXPECT_EQ(released.remaining_references(), 1u) << "ep2's reference must survive the replica's death";

  // Its ipcache entry survived too: a fresh watch's snapshot has it.
  grpc::ClientContext watch_context;
  watch_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = survivor->WatchIpCache(&watch_context, {});
  v1::WatchIpCacheResponse event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.kind(), v1::CHANGE_KIND_SNAPSHOT);
  EXPECT_EQ(event.entry().prefix(), "10.244.1.5/32");
  EXPECT_EQ(event.entry().owner_node(), "node-a");
  watch_context.TryCancel();
  reader->Finish();
}

TEST_F(IdentityReplicaTest, IpCacheWatchGetsRemoteChangesAtOnceAndResumesOnAnotherReplica) {
  auto watched = v1::IdentityService::NewStub(MakeChannel(sockets_[0]));
  auto writer = v1::IdentityService::NewStub(MakeChannel(sockets_[1]));
  auto other = v1::IdentityService::NewStub(MakeChannel(sockets_[2]));
  auto upsert = [&](const std::string& prefix, uint32_t identity) {
    v1::UpsertIpCacheEntryRequest request;
    request.mutable_entry()->set_prefix(prefix);
    request.mutable_entry()->set_identity(identity);
    request.mutable_entry()->set_owner_node("node-b");
    v1::UpsertIpCacheEntryResponse response;
    auto status = Call(*writer, &v1::IdentityService::Stub::UpsertIpCacheEntry, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.revision();
  };
  upsert("10.244.2.1/32", 500);  // starts node-b's session before timing anything

  uint64_t last = 0;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto reader = watched->WatchIpCache(&context, {});
    v1::WatchIpCacheResponse event;
    while (reader->Read(&event) && event.kind() != v1::CHANGE_KIND_SNAPSHOT_DONE) {
    }
    ASSERT_EQ(event.kind(), v1::CHANGE_KIND_SNAPSHOT_DONE);
    auto written_at = std::chrono::steady_clock::now();
    uint64_t revision = upsert("10.244.2.2/32", 501);
    ASSERT_TRUE(reader->Read(&event));
    auto latency = std::chrono::steady_clock::now() - written_at;
    EXPECT_EQ(event.kind(), v1::CHANGE_KIND_UPSERT);
    EXPECT_EQ(event.entry().prefix(), "10.244.2.2/32");
    EXPECT_EQ(event.revision(), revision);
    // Another replica's change is pushed by the store, not found by a poll.
    EXPECT_LT(latency, std::chrono::milliseconds(300));
    last = event.revision();
    context.TryCancel();
    reader->Finish();
  }
  // Disconnected: more changes, then the watcher comes back elsewhere.
  upsert("10.244.2.3/32", 502);
  upsert("10.244.2.2/32", 503);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::WatchIpCacheRequest resume;
  resume.set_after_revision(last);
  auto reader = other->WatchIpCache(&context, resume);
  std::vector<std::pair<std::string, uint32_t>> got;
  v1::WatchIpCacheResponse event;
  while (got.size() < 2 && reader->Read(&event)) got.emplace_back(event.entry().prefix(), event.entry().identity());
  EXPECT_EQ(got, (std::vector<std::pair<std::string, uint32_t>>{{"10.244.2.3/32", 502}, {"10.244.2.2/32", 503}}));
  context.TryCancel();
  reader->Finish();
}

TEST_F(IdentityReplicaTest, EveryReplicaAnswersLookupsForIdentitiesAllocatedElsewhere) {
  auto first = v1::IdentityService::NewStub(MakeChannel(sockets_[0]));
  v1::AllocateIdentityRequest request;
  auto* ns = request.add_labels();
  ns->set_key("io.kubernetes.pod.namespace");
  ns->set_value("lookup");
  request.mutable_owner()->set_node("n");
  request.mutable_owner()->set_endpoint("e");
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(10));
  v1::AllocateIdentityResponse allocated;
  ASSERT_TRUE(first->AllocateIdentity(&context, request, &allocated).ok());
  for (int i = 1; i < kReplicas; ++i) {
    auto stub = v1::IdentityService::NewStub(MakeChannel(sockets_[i]));
    bool found = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!found && std::chrono::steady_clock::now() < deadline) {
      grpc::ClientContext get_context;
      SetDeadline(get_context, std::chrono::seconds(2));
      v1::GetIdentityRequest get;
      get.set_id(allocated.identity().id());
      v1::GetIdentityResponse response;
      found = stub->GetIdentity(&get_context, get, &response).ok() &&
              LabelsText(response.identity()) == LabelsText(allocated.identity());
      if (!found) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(found) << "replica " << i << " does not know identity " << allocated.identity().id();
  }
}

TEST(BalancedChannel, RejectsTargetsItCannotBalanceOver) {
  EXPECT_EQ(MakeBalancedChannel({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeBalancedChannel({"/run/a.sock", "127.0.0.1:7070"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto names = MakeBalancedChannel({"identity-a.example:7070", "identity-b.example:7070"});
  EXPECT_EQ(names.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(names.status().message().find("one name"), std::string::npos) << names.status();
  EXPECT_TRUE(MakeBalancedChannel({"127.0.0.1:7070", "127.0.0.2:7070"}).ok());
  EXPECT_TRUE(MakeBalancedChannel({"dns:///identity.kube-system.svc:7070"}).ok());
}

}  // namespace
}  // namespace ebpfcni::identity
