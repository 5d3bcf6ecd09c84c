// The real ebpf-cni-ipam binary: bad pool flags stop it at startup with a
// clear message, and kill -9 at random moments while a client allocates and
// releases never gives an address two holders nor loses an acknowledged
// change.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "common/grpc/channel.h"
#include "ebpfcni/ipam/v1/ipam.grpc.pb.h"
#include "services/ipam/test_temp_dir.h"

namespace ebpfcni::ipam {
namespace {

using namespace std::chrono_literals;
using Key = std::pair<std::string, std::string>;  // (container id, ifname)
using Ips = std::vector<std::string>;

// The daemon as a child process; killed with SIGKILL when the handle goes
// away (and by the kernel if this test process dies first).
class IpamProcess {
 public:
  IpamProcess(const TestTempDir& dir) : socket_(dir.File("ipam.sock")), log_(dir.File("ipam.log")) {
    const std::vector<std::string> args = {IPAM_BINARY,
                                           "--pool_cidr=10.77.0.0/19",
                                           "--pool_cidr6=fd00:77::/64",
                                           "--state_dir=" + dir.File("state"),
                                           "--socket=" + socket_,
                                           "--log_file=" + log_};
    std::vector<char*> argv;
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~IpamProcess() { Kill(SIGKILL); }

  // Waits until the daemon accepts calls; fails if it exits or takes too long.
  std::unique_ptr<v1::IpamService::Stub> Connect() {
    const auto give_up = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < give_up) {
      int wstatus;
      if (pid_ > 0 && waitpid(pid_, &wstatus, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "ebpf-cni-ipam exited during startup; log:\n" << Log();
        return nullptr;
      }
      auto channel = MakeChannel(socket_);
      if (channel->WaitForConnected(std::chrono::system_clock::now() + 500ms)) {
        return v1::IpamService::NewStub(channel);
      }
    }
    ADD_FAILURE() << "ebpf-cni-ipam did not start serving within 15s; log:\n" << Log();
    return nullptr;
  }

  // Sends a signal and reaps the process; returns its wait status.
  int Kill(int signal) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    int wstatus = 0;
    waitpid(pid_, &wstatus, 0);
    pid_ = -1;
    return wstatus;
  }

  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::string socket_;
  std::string log_;
  pid_t pid_ = -1;
};

Key KeyOf(const v1::Attachment& attachment) { return {attachment.container_id(), attachment.interface_name()}; }

Ips IpsOf(const google::protobuf::RepeatedPtrField<v1::IpAssignment>& ips) {
  Ips out;
  for (const auto& ip : ips) out.push_back(ip.address());
  return out;
}

// What the client knows for sure: acknowledged allocations and releases.
// A call that failed (the server died under it) may or may not have been
// applied, so its attachment is "uncertain" until asked again.
struct Ledger {
  absl::Mutex mu;
  std::map<Key, Ips> held ABSL_GUARDED_BY(mu);
  std::set<Key> released ABSL_GUARDED_BY(mu);
  std::set<Key> uncertain ABSL_GUARDED_BY(mu);
  int acknowledged ABSL_GUARDED_BY(mu) = 0;
};

v1::Attachment MakeAttachment(const Key& key) {
  v1::Attachment attachment;
  attachment.set_container_id(key.first);
  attachment.set_interface_name(key.second);
  return attachment;
}

grpc::Status CallAllocate(v1::IpamService::Stub& stub, const Key& key, v1::AllocateResponse* response) {
  grpc::ClientContext context;
  SetDeadline(context, 3s);
  v1::AllocateRequest request;
  *request.mutable_attachment() = MakeAttachment(key);
  return stub.Allocate(&context, request, response);
}

// Allocates new attachments and releases some held ones until told to stop
// (bounded in count in case the kill never comes; 20 iterations of at most
// 400 new attachments fit the /19 pool even if nothing is ever released).
void ClientLoop(v1::IpamService::Stub& stub, int iteration, Ledger& ledger, std::atomic<bool>& stop,
                uint32_t seed) {
  std::mt19937 random(seed);
  for (int n = 0; n < 400 && !stop.load(); ++n) {
    std::optional<Key> to_release;
    if (random() % 4 == 0) {
      absl::MutexLock lock(&ledger.mu);
      if (!ledger.held.empty()) {
        auto it = ledger.held.begin();
        std::advance(it, random() % ledger.held.size());
        to_release = it->first;
      }
    }
    if (to_release) {
      grpc::ClientContext context;
      SetDeadline(context, 3s);
      v1::ReleaseRequest request;
      *request.mutable_attachment() = MakeAttachment(*to_release);
      v1::ReleaseResponse response;
      grpc::Status status = stub.Release(&context, request, &response);
      absl::MutexLock lock(&ledger.mu);
      ledger.held.erase(*to_release);
      if (status.ok()) {
        ledger.released.insert(*to_release);
        ++ledger.acknowledged;
      } else {
        ledger.uncertain.insert(*to_release);
      }
      continue;
    }
    Key key{"crash-" + std::to_string(iteration) + "-" + std::to_string(n), n % 3 == 0 ? "net1" : "eth0"};
    v1::AllocateResponse response;
    grpc::Status status = CallAllocate(stub, key, &response);
    absl::MutexLock lock(&ledger.mu);
    if (status.ok()) {
      ledger.held[key] = IpsOf(response.ips());
      ++ledger.acknowledged;
    } else {
      ledger.uncertain.insert(key);
    }
  }
}

struct RunResult {
  int exit_code;
  std::string output;
};

// Runs the binary to completion (it must fail fast here) and captures
// stdout+stderr.
RunResult RunToExit(const std::string& flags) {
  const std::string command = std::string(IPAM_BINARY) + " " + flags + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buffer[512];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(IpamStartupTest, BadPoolFlagsAreAClearStartupError) {
  TestTempDir dir;
  const std::string common = "--state_dir=" + dir.File("state") + " --socket=" + dir.File("ipam.sock");
  const struct {
    std::string flags;
    std::string expected;
  } cases[] = {
      {"--pool_cidr=10.0.0.0/31", "--pool_cidr=10.0.0.0/31: pool default-ipv4: 10.0.0.0/31 is too small"},
      {"--pool_cidr=10.0.0.1/32", "is too small"},
      {"--pool_cidr= --pool_cidr6=fd00::/127", "fd00::/127 is too small"},
      {"--pool_cidr=10.0.0.0/24 --pool_cidr6=fd00::/128", "--pool_cidr6=fd00::/128"},
      {"--pool_cidr=not-a-cidr", "\"not-a-cidr\" is not a CIDR prefix"},
      {"--pool_cidr=10.0.0.0/24 --pool_cidr6=10.1.0.0/24", "expected an IPv6 CIDR"},
      {"--pool_cidr= --pool_cidr6=", "no address pool configured"},
  };
  for (const auto& c : cases) {
    RunResult result = RunToExit(c.flags + " " + common);
    EXPECT_NE(result.exit_code, 0) << c.flags;
    EXPECT_NE(result.output.find(c.expected), std::string::npos) << c.flags << " printed:\n" << result.output;
  }
  // Nothing was served, so nothing was left behind.
  EXPECT_FALSE(std::filesystem::exists(dir.File("ipam.sock")));
}

TEST(IpamCrashTest, KillNineAtRandomMomentsLosesNothingAndNeverDoublesAnAddress) {
  TestTempDir dir;
  Ledger ledger;
  const uint32_t seed = std::random_device()();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 random(seed);

  constexpr int kIterations = 20;
  for (int iteration = 0; iteration < kIterations; ++iteration) {
    IpamProcess process(dir);
    auto stub = process.Connect();
    ASSERT_NE(stub, nullptr) << "iteration " << iteration;

    // Attachments whose last call died with the server: asking again must
    // give one consistent answer (idempotency across crashes).
    std::set<Key> retry;
    {
      absl::MutexLock lock(&ledger.mu);
      retry.swap(ledger.uncertain);
    }
    for (const Key& key : retry) {
      v1::AllocateResponse response;
      grpc::Status status = CallAllocate(*stub, key, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      absl::MutexLock lock(&ledger.mu);
      ledger.released.erase(key);
      ledger.held[key] = IpsOf(response.ips());
    }

    std::atomic<bool> stop{false};
    std::thread client(ClientLoop, std::ref(*stub), iteration, std::ref(ledger), std::ref(stop), random());
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + random() % 230));
    const int wstatus = process.Kill(SIGKILL);
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << "iteration " << iteration;
    stop = true;
    client.join();
  }

  // Final check against a restarted daemon.
  IpamProcess process(dir);
  auto stub = process.Connect();
  ASSERT_NE(stub, nullptr);
  grpc::ClientContext context;
  SetDeadline(context, 10s);
  v1::ListAllocationsResponse list;
  grpc::Status status = stub->ListAllocations(&context, v1::ListAllocationsRequest(), &list);
  ASSERT_TRUE(status.ok()) << status.error_message();

  std::map<Key, Ips> stored;
  std::map<std::string, Key> holder;
  for (const v1::Allocation& allocation : list.allocations()) {
    const Key key = KeyOf(allocation.attachment());
    ASSERT_EQ(allocation.ips_size(), 2) << key.first;
    stored[key] = IpsOf(allocation.ips());
    for (const std::string& address : stored[key]) {
      auto [it, inserted] = holder.emplace(address, key);
      EXPECT_TRUE(inserted) << address << " is held by both " << it->second.first << " and " << key.first;
    }
  }

  absl::MutexLock lock(&ledger.mu);
  std::printf("%d acknowledged calls, %zu attachments stored, %zu uncertain at the last kill\n", ledger.acknowledged,
              stored.size(), ledger.uncertain.size());
  EXPECT_GT(ledger.acknowledged, kIterations) << "the client barely got any call through";
  for (const auto& [key, ips] : ledger.held) {
    auto it = stored.find(key);
    ASSERT_NE(it, stored.end()) << "acknowledged allocation of " << key.first << " was lost";
    EXPECT_EQ(it->second, ips) << key.first;
  }
  for (const Key& key : ledger.released) {
    EXPECT_FALSE(stored.contains(key)) << "acknowledged release of " << key.first << " was undone";
  }
  // Everything stored is either known held or uncertain (a call in flight
  // at the kill that did commit).
  for (const auto& [key, ips] : stored) {
    EXPECT_TRUE(ledger.held.contains(key) || ledger.uncertain.contains(key)) << key.first << " appeared from nowhere";
  }

  grpc::ClientContext pools_context;
  SetDeadline(pools_context, 10s);
  v1::ListPoolsResponse pools;
  ASSERT_TRUE(stub->ListPools(&pools_context, v1::ListPoolsRequest(), &pools).ok());
  for (const v1::Pool& pool : pools.pools()) EXPECT_EQ(pool.allocated(), stored.size()) << pool.name();

  // A clean stop on SIGTERM.
  const int wstatus = process.Kill(SIGTERM);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << process.Log();
}

}  // namespace
}  // namespace ebpfcni::ipam
