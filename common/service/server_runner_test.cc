// Runs the real server runner on a temporary unix socket and inspects it the
// way grpcurl does: health checks and the reflection service list.
#include "common/service/server_runner.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include "common/grpc/channel.h"
#include "ebpfcni/ipam/v1/ipam.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace ebpfcni {
namespace {

// A service with no handlers: enough to be registered, listed and health-checked.
class EmptyIpam final : public ebpfcni::ipam::v1::IpamService::Service {};

class ServerRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ebpfcni-runner-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    listen_.unix_socket_path = (dir_ / "sub" / "svc.sock").string();
    listen_.socket_mode = 0600;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  ListenOptions listen_;
};

TEST_F(ServerRunnerTest, ServesHealthAndReflectionThenStopsOnSigterm) {
  EmptyIpam ipam;
  std::atomic<bool> started{false};
  absl::Status result;
  std::thread server([&] {
    result = ServeUntilSignal(listen_, {{&ipam, "ebpfcni.ipam.v1.IpamService"}}, [&] { started = true; });
  });
  for (int i = 0; i < 100 && !started; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(started);

  struct stat st;
  ASSERT_EQ(stat(listen_.unix_socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto channel = MakeChannel(listen_.unix_socket_path);
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const char* name : {"", "ebpfcni.ipam.v1.IpamService"}) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(name);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok()) << name;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << name;
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("no.such.Service");
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_EQ(health->Check(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }

  // Reflection: list services through the v1alpha stream, with messages built
  // from the descriptors the reflection library registered.
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  const auto* req_desc = pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionRequest");
  const auto* resp_desc = pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionResponse");
  ASSERT_NE(req_desc, nullptr);
  ASSERT_NE(resp_desc, nullptr);
  google::protobuf::DynamicMessageFactory factory;
  std::unique_ptr<google::protobuf::Message> request(factory.GetPrototype(req_desc)->New());
  request->GetReflection()->SetString(request.get(), req_desc->FindFieldByName("list_services"), "*");

  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::seconds(5));
  grpc::CompletionQueue cq;
  void* tag;
  bool ok;
  auto call = stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer out;
  std::string bytes = request->SerializeAsString();
  grpc::Slice slice(bytes);
  out = grpc::ByteBuffer(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string received;
  for (auto& s : slices) received.append(reinterpret_cast<const char*>(s.begin()), s.size());
  std::unique_ptr<google::protobuf::Message> response(factory.GetPrototype(resp_desc)->New());
  ASSERT_TRUE(response->ParseFromString(received));
  std::string text = response->DebugString();
  EXPECT_NE(text.find("ebpfcni.ipam.v1.IpamService"), std::string::npos) << text;
  EXPECT_NE(text.find("grpc.health.v1.Health"), std::string::npos) << text;
  call->WritesDone(reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  grpc::Status finish;
  call->Finish(&finish, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {}

  kill(getpid(), SIGTERM);
  server.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_FALSE(std::filesystem::exists(listen_.unix_socket_path)) << "socket must be removed on stop";
}

TEST_F(ServerRunnerTest, RefusesPlaintextTcp) {
  listen_.tcp_address = "127.0.0.1:0";
  EmptyIpam ipam;
  absl::Status result = ServeUntilSignal(listen_, {{&ipam, "ebpfcni.ipam.v1.IpamService"}});
  EXPECT_TRUE(absl::IsInvalidArgument(result)) << result;
  EXPECT_NE(result.message().find("--tls_cert"), std::string::npos);
}

}  // namespace
}  // namespace ebpfcni

// Signals must be blocked before any thread starts, exactly as in a service's main().
int main(int argc, char** argv) {
  ebpfcni::BlockTerminationSignals();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
