#include "services/identity/identity_service.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include "services/identity/node_heartbeater.h"
#include "services/identity/reserved_identities.h"
#include "services/identity/sqlite_identity_store.h"

namespace ebpfcni::identity {
namespace {

using v1::IdentityService;

class IdentityServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ebpfcni-idsvc-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    store_ = std::move(*SqliteIdentityStore::Open((dir_ / "identity.db").string(), {256, 65535}));
    service_ = std::make_unique<IdentityServiceImpl>(*store_, LabelFilter::Default());
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = IdentityService::NewStub(server_->InProcessChannel({}));
  }
  void TearDown() override {
    service_->StopWatches();
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  static v1::AllocateIdentityRequest Request(std::vector<std::pair<std::string, std::string>> labels,
                                             std::string endpoint = "e1") {
    v1::AllocateIdentityRequest request;
    for (auto& [k, v] : labels) {
      auto* l = request.add_labels();
      l->set_key(k);
      l->set_value(v);
    }
    request.mutable_owner()->set_node("node1");
    request.mutable_owner()->set_endpoint(endpoint);
    return request;
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteIdentityStore> store_;
  std::unique_ptr<IdentityServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<IdentityService::Stub> stub_;
};

TEST_F(IdentityServiceTest, PodsDifferingOnlyInTemplateHashShareAnIdentity) {
  grpc::ClientContext c1, c2;
  v1::AllocateIdentityResponse r1, r2;
  ASSERT_TRUE(stub_->AllocateIdentity(&c1, Request({{"app", "web"}, {"pod-template-hash", "a1"},
                                                    {"io.kubernetes.pod.namespace", "prod"}}, "p1"), &r1).ok());
  ASSERT_TRUE(stub_->AllocateIdentity(&c2, Request({{"app", "web"}, {"pod-template-hash", "b2"},
                                                    {"io.kubernetes.pod.namespace", "prod"}}, "p2"), &r2).ok());
  EXPECT_EQ(r1.identity().id(), r2.identity().id());
  EXPECT_TRUE(r1.newly_allocated());
  EXPECT_FALSE(r2.newly_allocated());
  EXPECT_GE(r1.identity().id(), kFirstAllocatableIdentity);
}

TEST_F(IdentityServiceTest, RejectsMissingOwnerAndBadLabels) {
  grpc::ClientContext c1, c2;
  v1::AllocateIdentityResponse r;
  auto no_owner = Request({{"app", "web"}});
  no_owner.clear_owner();
  auto s = stub_->AllocateIdentity(&c1, no_owner, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("owner"), std::string::npos);
  s = stub_->AllocateIdentity(&c2, Request({{"app", "has space"}}), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(IdentityServiceTest, ReservedIdentitiesHaveFixedNumbers) {
  grpc::ClientContext c;
  v1::GetIdentityRequest request;
  request.set_id(static_cast<uint32_t>(ReservedIdentity::kWorld));
  v1::GetIdentityResponse response;
  ASSERT_TRUE(stub_->GetIdentity(&c, request, &response).ok());
  EXPECT_TRUE(response.identity().reserved());
  ASSERT_EQ(response.identity().labels_size(), 1);
  EXPECT_EQ(response.identity().labels(0).key(), "world");
  // What the datapath gives addresses outside the cluster, per family.
  for (auto [id, name] : {std::pair{ReservedIdentity::kWorldIpv4, "world-ipv4"},
                          std::pair{ReservedIdentity::kWorldIpv6, "world-ipv6"}}) {
    grpc::ClientContext context;
    request.set_id(static_cast<uint32_t>(id));
    ASSERT_TRUE(stub_->GetIdentity(&context, request, &response).ok()) << name;
    EXPECT_TRUE(response.identity().reserved());
    ASSERT_EQ(response.identity().labels_size(), 1);
    EXPECT_EQ(response.identity().labels(0).key(), name);
  }

  grpc::ClientContext c2;
  v1::ListIdentitiesResponse list;
  ASSERT_TRUE(stub_->ListIdentities(&c2, {}, &list).ok());
  EXPECT_GE(list.identities_size(), 9);

  grpc::ClientContext c3;
  request.set_id(4242);
  EXPECT_EQ(stub_->GetIdentity(&c3, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(IdentityServiceTest, WatchSendsSnapshotThenDeltas) {
  grpc::ClientContext pre;
  v1::AllocateIdentityResponse existing;
  ASSERT_TRUE(stub_->AllocateIdentity(&pre, Request({{"app", "before"}}), &existing).ok());

  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = stub_->WatchIdentities(&watch_ctx, {});
  v1::WatchIdentitiesResponse event;
  bool saw_existing = false;
  while (reader->Read(&event) && event.kind() != v1::CHANGE_KIND_SNAPSHOT_DONE) {
    if (event.identity().id() == existing.identity().id()) saw_existing = true;
  }
  ASSERT_EQ(event.kind(), v1::CHANGE_KIND_SNAPSHOT_DONE);
  EXPECT_TRUE(saw_existing);

  grpc::ClientContext post;
  v1::AllocateIdentityResponse added;
  ASSERT_TRUE(stub_->AllocateIdentity(&post, Request({{"app", "after"}}), &added).ok());
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.kind(), v1::CHANGE_KIND_UPSERT);
  EXPECT_EQ(event.identity().id(), added.identity().id());
  watch_ctx.TryCancel();
  reader->Finish();
}

v1::UpsertIpCacheEntryResponse UpsertIp(IdentityService::Stub& stub, const std::string& prefix, uint32_t identity,
                                        grpc::StatusCode expected = grpc::StatusCode::OK) {
  grpc::ClientContext context;
  v1::UpsertIpCacheEntryRequest request;
  request.mutable_entry()->set_prefix(prefix);
  request.mutable_entry()->set_identity(identity);
  request.mutable_entry()->set_owner_node("node1");
  v1::UpsertIpCacheEntryResponse response;
  EXPECT_EQ(stub.UpsertIpCacheEntry(&context, request, &response).error_code(), expected) << prefix;
  return response;
}

TEST_F(IdentityServiceTest, IpCacheWatchResumesAfterReconnectWithoutLoss) {
  UpsertIp(*stub_, "10.0.0.1", 300);  // a bare address is a /32
  UpsertIp(*stub_, "not-an-ip", 300, grpc::StatusCode::INVALID_ARGUMENT);
  UpsertIp(*stub_, "10.0.0.9/32", 0, grpc::StatusCode::INVALID_ARGUMENT);

  uint64_t last_revision = 0;
  {
    grpc::ClientContext watch_ctx;
    watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto reader = stub_->WatchIpCache(&watch_ctx, {});
    v1::WatchIpCacheResponse event;
    ASSERT_TRUE(reader->Read(&event));
    EXPECT_EQ(event.kind(), v1::CHANGE_KIND_SNAPSHOT);
    EXPECT_EQ(event.entry().prefix(), "10.0.0.1/32");
    EXPECT_EQ(event.entry().identity(), 300u);
    EXPECT_EQ(event.entry().owner_node(), "node1");
    ASSERT_TRUE(reader->Read(&event));
    ASSERT_EQ(event.kind(), v1::CHANGE_KIND_SNAPSHOT_DONE);
    auto added = UpsertIp(*stub_, "10.0.1.7/24", 301);  // canonical: the network
    ASSERT_TRUE(reader->Read(&event));
    EXPECT_EQ(event.kind(), v1::CHANGE_KIND_UPSERT);
    EXPECT_EQ(event.entry().prefix(), "10.0.1.0/24");
    EXPECT_EQ(event.revision(), added.revision());
    last_revision = event.revision();
    watch_ctx.TryCancel();
    reader->Finish();
  }
  // While disconnected: one more entry and one deletion.
  UpsertIp(*stub_, "fd00::5", 302);
  {
    grpc::ClientContext context;
    v1::DeleteIpCacheEntryRequest request;
    request.set_prefix("10.0.0.1/32");
    request.set_node("node1");
    v1::DeleteIpCacheEntryResponse response;
    ASSERT_TRUE(stub_->DeleteIpCacheEntry(&context, request, &response).ok());
    EXPECT_TRUE(response.deleted());
  }
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::WatchIpCacheRequest resume;
  resume.set_after_revision(last_revision);
  auto reader = stub_->WatchIpCache(&watch_ctx, resume);
  v1::WatchIpCacheResponse event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.kind(), v1::CHANGE_KIND_UPSERT) << "no snapshot when resuming";
  EXPECT_EQ(event.entry().prefix(), "fd00::5/128");
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.kind(), v1::CHANGE_KIND_DELETE);
  EXPECT_EQ(event.entry().prefix(), "10.0.0.1/32");
  EXPECT_GT(event.revision(), last_revision);
  watch_ctx.TryCancel();
  reader->Finish();
}

TEST_F(IdentityServiceTest, NodeHeartbeatStartsThenContinuesASession) {
  grpc::ClientContext c1, c2, c3;
  v1::NodeHeartbeatRequest request;
  request.set_node("node7");
  request.set_ttl_seconds(20);
  v1::NodeHeartbeatResponse response;
  ASSERT_TRUE(stub_->NodeHeartbeat(&c1, request, &response).ok());
  EXPECT_TRUE(response.new_session());
  EXPECT_EQ(response.ttl_seconds(), 20u);
  ASSERT_TRUE(stub_->NodeHeartbeat(&c2, request, &response).ok());
  EXPECT_FALSE(response.new_session());
  request.set_node("a/b");
  EXPECT_EQ(stub_->NodeHeartbeat(&c3, request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(IdentityServiceTest, HeartbeaterKeepsTheNodesReferencesUntilItStops) {
  std::atomic<int> new_sessions{0};
  auto heartbeater = std::make_unique<NodeHeartbeater>(
      server_->InProcessChannel({}), NodeHeartbeater::Options{"node1", absl::Seconds(2), absl::Seconds(2)},
      [&] { ++new_sessions; });
  // The first heartbeat fixes the session's TTL: let it land before allocating.
  for (int i = 0; i < 50 && !heartbeater->last_status().ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  grpc::ClientContext c;
  v1::AllocateIdentityResponse allocated;
  ASSERT_TRUE(stub_->AllocateIdentity(&c, Request({{"app", "beating"}}), &allocated).ok());
  // Well past the TTL: the heartbeats keep the reference.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_TRUE(heartbeater->last_status().ok()) << heartbeater->last_status();
  EXPECT_EQ(new_sessions.load(), 1) << "one session from the first heartbeat on";
  ASSERT_TRUE(service_->CollectGarbage(absl::ZeroDuration()).ok());
  EXPECT_TRUE(store_->Get(allocated.identity().id())->has_value());

  heartbeater.reset();  // the node dies
  bool collected = false;
  for (int i = 0; i < 40 && !collected; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ASSERT_TRUE(service_->CollectGarbage(absl::ZeroDuration()).ok());
    collected = !store_->Get(allocated.identity().id())->has_value();
  }
  EXPECT_TRUE(collected) << "a silent node's identity must be collected after its TTL";
}

}  // namespace
}  // namespace ebpfcni::identity
