// Runs the real ebpf-cni-datapath binary on a private socket, bpf dir and
// state dir: flags, startup, gRPC over the unix socket, SIGTERM and a
// restart that re-adopts the endpoint without duplicating its filters.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/grpc/channel.h"
#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "services/datapath/tc_attachment.h"
#include "services/datapath/testing/kernel_fixtures.h"

extern char** environ;

namespace ebpfcni::datapath {
namespace {

namespace v1 = ::ebpfcni::datapath::v1;

// One running daemon; stopped (SIGTERM, then SIGKILL) when destroyed.
class DaemonProcess {
 public:
  explicit DaemonProcess(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~DaemonProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  // Sends SIGTERM and returns the exit code (-1 if it had to be killed).
  int Terminate() {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {  // up to 10 s
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;  // the destructor kills it
  }

 private:
  pid_t pid_ = -1;
};

bool WaitForSocket(const std::string& path) {
  for (int i = 0; i < 100; ++i) {  // up to 10 s
    if (std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

TEST(DatapathBinaryTest, ServesAttachesAndReadoptsAcrossRestart) {
  testing::ScopedBpfDir bpf_dir{"binary"};
  testing::ScopedTempDir state_dir{"binary-state"};
  testing::ScopedVethPair pod{"x", "10.251.0.10/30"};
  ASSERT_TRUE(pod.ok());
  const std::string socket = state_dir.path() + "/datapath.sock";
  const std::vector<std::string> args = {EBPFCNI_DATAPATH_BINARY, "--bpf_dir=" + bpf_dir.path(),
                                         "--state_dir=" + state_dir.path(),
                                         "--socket=" + socket};

  v1::EndpointKey key;
  key.set_container_id("ctr-binary");
  key.set_interface_name("eth0");
  uint32_t endpoint_id = 0;
  {
    DaemonProcess daemon(args);
    ASSERT_TRUE(daemon.started());
    ASSERT_TRUE(WaitForSocket(socket)) << "daemon did not create " << socket;
    auto stub = v1::DatapathService::NewStub(MakeChannel(socket));
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(10));
    context.set_wait_for_ready(true);
    v1::CreateEndpointRequest request;
    *request.mutable_key() = key;
    request.set_host_ifindex(pod.host_ifindex());
    v1::CreateEndpointResponse response;
    grpc::Status status = stub->CreateEndpoint(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    endpoint_id = response.endpoint().endpoint_id();
    EXPECT_EQ(response.endpoint().state(), v1::ATTACHMENT_STATE_ATTACHED);
    stub.reset();
    EXPECT_EQ(daemon.Terminate(), 0);
  }
  // Filters outlive the daemon: pods keep their datapath while it is down.
  const int ifindex = static_cast<int>(pod.host_ifindex());
  const uint32_t first_program = *QueryTcProgram(ifindex, TcDirection::kIngress);
  EXPECT_NE(first_program, 0u);

  DaemonProcess daemon(args);
  ASSERT_TRUE(daemon.started());
  ASSERT_TRUE(WaitForSocket(socket));
  auto stub = v1::DatapathService::NewStub(MakeChannel(socket));
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(10));
  context.set_wait_for_ready(true);
  v1::ListEndpointsResponse list;
  grpc::Status status = stub->ListEndpoints(&context, v1::ListEndpointsRequest(), &list);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(list.endpoints_size(), 1);
  EXPECT_EQ(list.endpoints(0).endpoint_id(), endpoint_id);
  EXPECT_EQ(list.endpoints(0).state(), v1::ATTACHMENT_STATE_ATTACHED);
  const uint32_t second_program = *QueryTcProgram(ifindex, TcDirection::kIngress);
  EXPECT_NE(second_program, first_program);
  absl::StatusOr<std::string> filters =
      testing::CommandOutput("tc filter show dev " + pod.host_name() + " ingress");
  ASSERT_TRUE(filters.ok());
  // One filter is printed as a chain line plus one line with its handle.
  size_t handles = 0;
  for (size_t at = filters->find("handle "); at != std::string::npos;
       at = filters->find("handle ", at + 1)) {
    ++handles;
  }
  EXPECT_EQ(handles, 1u) << *filters;

  grpc::ClientContext delete_context;
  SetDeadline(delete_context, std::chrono::seconds(10));
  v1::DeleteEndpointRequest delete_request;
  *delete_request.mutable_key() = key;
  v1::DeleteEndpointResponse deleted;
  ASSERT_TRUE(stub->DeleteEndpoint(&delete_context, delete_request, &deleted).ok());
  EXPECT_TRUE(deleted.deleted());
  EXPECT_EQ(*QueryTcProgram(ifindex, TcDirection::kIngress), 0u);
  EXPECT_EQ(daemon.Terminate(), 0);
}

}  // namespace
}  // namespace ebpfcni::datapath
