#include "common/grpc/channel.h"

#include <unistd.h>

#include <filesystem>

#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include "grpc/health/v1/health.grpc.pb.h"

namespace ebpfcni {
namespace {

TEST(ChannelTest, BarePathsBecomeUnixTargets) {
  EXPECT_EQ(NormalizeTarget("/run/x.sock"), "unix:/run/x.sock");
  EXPECT_EQ(NormalizeTarget("dns:///svc:1"), "dns:///svc:1");
}

class AlwaysServing final : public grpc::health::v1::Health::Service {
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* response) override {
    response->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

// A comma-separated list of replicas is balanced over with retries, so a
// call succeeds while one replica is down.
TEST(ChannelTest, TargetListFailsOverToALiveReplica) {
  auto dir = std::filesystem::temp_directory_path() / ("ebpfcni-channel-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string live = (dir / "live.sock").string();
  std::string dead = (dir / "dead.sock").string();
  AlwaysServing health;
  grpc::ServerBuilder builder;
  builder.RegisterService(&health);
  builder.AddListeningPort("unix:" + live, grpc::InsecureServerCredentials());
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  auto stub = grpc::health::v1::Health::NewStub(MakeChannelForTargets(dead + "," + live));
  int ok = 0;
  for (int i = 0; i < 6; ++i) {  // round_robin visits both; every call must land
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(5));
    grpc::health::v1::HealthCheckResponse response;
    if (stub->Check(&context, {}, &response).ok()) ++ok;
  }
  EXPECT_EQ(ok, 6);
  server->Shutdown();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ebpfcni
