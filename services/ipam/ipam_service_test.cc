#include "services/ipam/ipam_service.h"

#include <grpcpp/grpcpp.h>

#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/ipam/test_temp_dir.h"

namespace ebpfcni::ipam {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

// Runs the service in-process over a real gRPC server (InProcessChannel), so
// requests go through serialization and the server's thread pool.
class IpamServiceTest : public ::testing::Test {
 protected:
  void Start(const std::string& v4, const std::string& v6) {
    auto pools = ConfigurePools(v4, v6);
    ASSERT_TRUE(pools.ok()) << pools.status();
    auto store = AllocationStore::Open(dir_.File("ipam.db"), std::move(*pools));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    service_ = std::make_unique<IpamServiceImpl>(*store_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::IpamService::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  static v1::AllocateRequest AllocateRequest(const std::string& container_id, const std::string& ifname = "eth0") {
    v1::AllocateRequest request;
    request.mutable_attachment()->set_container_id(container_id);
    request.mutable_attachment()->set_interface_name(ifname);
    request.set_pod_namespace("default");
    request.set_pod_name("pod-" + container_id);
    return request;
  }

  grpc::Status Allocate(const v1::AllocateRequest& request, v1::AllocateResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub_->Allocate(&context, request, response);
  }

  // ListAllocations (of one container, or all); fails the test on error.
  v1::ListAllocationsResponse ListAllocations(const std::string& container_id = "") {
    grpc::ClientContext context;
    v1::ListAllocationsRequest request;
    request.set_container_id(container_id);
    v1::ListAllocationsResponse list;
    grpc::Status status = stub_->ListAllocations(&context, request, &list);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return list;
  }

  TestTempDir dir_;
  std::unique_ptr<AllocationStore> store_;
  std::unique_ptr<IpamServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::IpamService::Stub> stub_;
};

TEST_F(IpamServiceTest, DualStackAllocation) {
  Start("10.244.0.0/24", "fd00:244::/64");
  v1::AllocateResponse response;
  ASSERT_TRUE(Allocate(AllocateRequest("c1"), &response).ok());
  EXPECT_FALSE(response.already_allocated());
  ASSERT_EQ(response.ips_size(), 2);
  const v1::IpAssignment& v4 = response.ips(0);
  EXPECT_EQ(v4.family(), v1::IP_FAMILY_IPV4);
  EXPECT_EQ(v4.address(), "10.244.0.2");
  EXPECT_EQ(v4.pool_prefix_length(), 24u);
  EXPECT_EQ(v4.gateway(), "10.244.0.1");
  EXPECT_EQ(v4.pool(), "default-ipv4");
  const v1::IpAssignment& v6 = response.ips(1);
  EXPECT_EQ(v6.family(), v1::IP_FAMILY_IPV6);
  EXPECT_EQ(v6.address(), "fd00:244::2");
  EXPECT_EQ(v6.pool_prefix_length(), 64u);
  EXPECT_EQ(v6.gateway(), "fd00:244::1");
  EXPECT_EQ(v6.pool(), "default-ipv6");

  v1::AllocateResponse again;
  ASSERT_TRUE(Allocate(AllocateRequest("c1"), &again).ok());
  EXPECT_TRUE(again.already_allocated());
  EXPECT_EQ(again.ips(0).address(), "10.244.0.2");
  EXPECT_EQ(again.ips(1).address(), "fd00:244::2");
}

TEST_F(IpamServiceTest, ExhaustionIsResourceExhaustedNamingThePool) {
  Start("10.7.0.0/30", "");
  v1::AllocateResponse response;
  ASSERT_TRUE(Allocate(AllocateRequest("a"), &response).ok());
  grpc::Status status = Allocate(AllocateRequest("b"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("default-ipv4"));
  EXPECT_THAT(status.error_message(), HasSubstr("10.7.0.0/30"));
}

TEST_F(IpamServiceTest, MissingAttachmentFieldsAreInvalidArgument) {
  Start("10.244.0.0/24", "");
  v1::AllocateResponse response;
  EXPECT_EQ(Allocate(AllocateRequest(""), &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status status = Allocate(AllocateRequest("c1", ""), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("interface_name"));
  grpc::ClientContext context;
  v1::ReleaseResponse release;
  EXPECT_EQ(stub_->Release(&context, v1::ReleaseRequest(), &release).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(IpamServiceTest, ReleaseListGarbageCollectAndPools) {
  Start("10.244.0.0/24", "fd00::/120");
  v1::AllocateResponse response;
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(Allocate(AllocateRequest(id), &response).ok());

  {
    grpc::ClientContext context;
    v1::ListPoolsResponse pools;
    ASSERT_TRUE(stub_->ListPools(&context, v1::ListPoolsRequest(), &pools).ok());
    ASSERT_EQ(pools.pools_size(), 2);
    EXPECT_EQ(pools.pools(0).name(), "default-ipv4");
    EXPECT_EQ(pools.pools(0).cidr(), "10.244.0.0/24");
    EXPECT_EQ(pools.pools(0).gateway(), "10.244.0.1");
    EXPECT_EQ(pools.pools(0).capacity(), 253u);
    EXPECT_EQ(pools.pools(0).allocated(), 3u);
    EXPECT_EQ(pools.pools(1).family(), v1::IP_FAMILY_IPV6);
    EXPECT_EQ(pools.pools(1).capacity(), 254u);
    EXPECT_EQ(pools.pools(1).allocated(), 3u);
  }
  {
    grpc::ClientContext context;
    v1::ReleaseRequest request;
    request.mutable_attachment()->set_container_id("a");
    request.mutable_attachment()->set_interface_name("eth0");
    v1::ReleaseResponse released;
    ASSERT_TRUE(stub_->Release(&context, request, &released).ok());
    EXPECT_EQ(released.released_count(), 2u);
    grpc::ClientContext context2;
    ASSERT_TRUE(stub_->Release(&context2, request, &released).ok());
    EXPECT_EQ(released.released_count(), 0u);
  }
  {
    v1::ListAllocationsResponse list = ListAllocations("b");
    ASSERT_EQ(list.allocations_size(), 1);
    EXPECT_EQ(list.allocations(0).attachment().container_id(), "b");
    EXPECT_EQ(list.allocations(0).pod_namespace(), "default");
    EXPECT_EQ(list.allocations(0).pod_name(), "pod-b");
    EXPECT_EQ(list.allocations(0).ips_size(), 2);
    EXPECT_GT(list.allocations(0).created_unix_ms(), 0);
  }
  {
    grpc::ClientContext context;
    v1::GarbageCollectRequest request;
    v1::Attachment* valid = request.add_valid_attachments();
    valid->set_container_id("b");
    valid->set_interface_name("eth0");
    v1::GarbageCollectResponse gc;
    ASSERT_TRUE(stub_->GarbageCollect(&context, request, &gc).ok());
    ASSERT_EQ(gc.released_size(), 1);
    EXPECT_EQ(gc.released(0).container_id(), "c");
  }
  {
    v1::ListAllocationsResponse list = ListAllocations();
    ASSERT_EQ(list.allocations_size(), 1);
    EXPECT_EQ(list.allocations(0).attachment().container_id(), "b");
  }
}

TEST_F(IpamServiceTest, NetworkNameIsRecordedListedAndScopesGarbageCollection) {
  Start("10.244.0.0/24", "");
  v1::AllocateResponse response;
  v1::AllocateRequest first = AllocateRequest("a");
  first.set_network_name("net-a");
  ASSERT_TRUE(Allocate(first, &response).ok());
  v1::AllocateRequest second = AllocateRequest("a", "net1");
  second.set_network_name("net-b");
  ASSERT_TRUE(Allocate(second, &response).ok());
  ASSERT_TRUE(Allocate(AllocateRequest("unnamed"), &response).ok());
  {
    v1::ListAllocationsResponse list = ListAllocations("a");
    ASSERT_EQ(list.allocations_size(), 2);
    EXPECT_EQ(list.allocations(0).attachment().interface_name(), "eth0");
    EXPECT_EQ(list.allocations(0).network_name(), "net-a");
    EXPECT_EQ(list.allocations(1).network_name(), "net-b");
  }
  {
    // net-b's GC with nothing valid frees net-b's attachment only.
    grpc::ClientContext context;
    v1::GarbageCollectRequest request;
    request.set_network_name("net-b");
    v1::GarbageCollectResponse gc;
    ASSERT_TRUE(stub_->GarbageCollect(&context, request, &gc).ok());
    ASSERT_EQ(gc.released_size(), 1);
    EXPECT_EQ(gc.released(0).container_id(), "a");
    EXPECT_EQ(gc.released(0).interface_name(), "net1");
  }
  {
    v1::ListAllocationsResponse list = ListAllocations();
    ASSERT_EQ(list.allocations_size(), 2);
    EXPECT_EQ(list.allocations(0).network_name(), "net-a");
    EXPECT_EQ(list.allocations(1).attachment().container_id(), "unnamed");
    EXPECT_EQ(list.allocations(1).network_name(), "");
  }
}

TEST_F(IpamServiceTest, ConcurrentAllocationsForDistinctAttachmentsAreDistinct) {
  Start("10.244.0.0/24", "fd00::/64");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20;
  std::vector<std::vector<v1::AllocateResponse>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        v1::AllocateResponse response;
        grpc::Status status = Allocate(AllocateRequest("c" + std::to_string(t) + "-" + std::to_string(i)), &response);
        EXPECT_TRUE(status.ok()) << status.error_message();
        results[t].push_back(response);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> v4, v6;
  for (const auto& per_thread : results) {
    for (const auto& response : per_thread) {
      ASSERT_EQ(response.ips_size(), 2);
      EXPECT_FALSE(response.already_allocated());
      v4.insert(response.ips(0).address());
      v6.insert(response.ips(1).address());
    }
  }
  EXPECT_THAT(v4, SizeIs(kThreads * kPerThread));
  EXPECT_THAT(v6, SizeIs(kThreads * kPerThread));
}

TEST_F(IpamServiceTest, ConcurrentAllocationsForOneAttachmentAgree) {
  Start("10.244.0.0/24", "fd00::/64");
  constexpr int kThreads = 16;
  std::vector<v1::AllocateResponse> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      grpc::Status status = Allocate(AllocateRequest("same"), &results[t]);
      EXPECT_TRUE(status.ok()) << status.error_message();
    });
  }
  for (auto& thread : threads) thread.join();
  int fresh = 0;
  for (const auto& response : results) {
    ASSERT_EQ(response.ips_size(), 2);
    EXPECT_EQ(response.ips(0).address(), results[0].ips(0).address());
    EXPECT_EQ(response.ips(1).address(), results[0].ips(1).address());
    if (!response.already_allocated()) ++fresh;
  }
  EXPECT_EQ(fresh, 1);
  grpc::ClientContext context;
  v1::ListAllocationsResponse list;
  ASSERT_TRUE(stub_->ListAllocations(&context, v1::ListAllocationsRequest(), &list).ok());
  EXPECT_EQ(list.allocations_size(), 1);
}

}  // namespace
}  // namespace ebpfcni::ipam
