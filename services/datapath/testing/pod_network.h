#pragma once
// A miniature node for end-to-end datapath tests: a "node" network
// namespace holding the host sides of two pods' veths with routes between
// them (forwarding is switched on inside that namespace only, so the
// machine's own sysctls are never touched), the real ebpf-cni-datapath
// binary running in it, and socket helpers that work inside the pods.
// Everything is named with the per-process test tag and removed in the
// destructors, also when a test fails.
#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace ebpfcni::datapath::testing {

struct TestPod {
  std::string netns;        // e.g. ebdt01234-e-pa
  std::string netns_path;   // /run/netns/<netns>
  std::string host_ifname;  // in the node namespace
  uint32_t host_ifindex = 0;
  std::string ip;           // IPv4, /32 on the pod's eth0
};

class ScopedTwoPodNode {
 public:
  // `suffix` keeps fixtures of one test binary apart (one or two letters).
  explicit ScopedTwoPodNode(const std::string& suffix);
  ~ScopedTwoPodNode();
  ScopedTwoPodNode(const ScopedTwoPodNode&) = delete;
  ScopedTwoPodNode& operator=(const ScopedTwoPodNode&) = delete;

  bool ok() const { return ok_; }
  const std::string& node_netns_path() const { return node_path_; }
  const TestPod& a() const { return a_; }
  const TestPod& b() const { return b_; }

 private:
  bool AddPod(TestPod& pod, const std::string& name, const std::string& ip);

  std::string node_netns_;
  std::string node_path_;
  TestPod a_;
  TestPod b_;
  bool ok_ = false;
};

// A process started inside a network namespace (nsenter --net, so the
// process still sees the machine's bpffs); killed when destroyed.
class NetnsProcess {
 public:
  NetnsProcess(const std::string& netns_path, std::vector<std::string> args);
  ~NetnsProcess();
  bool started() const { return pid_ > 0; }
  void Kill9();
  // SIGTERM, then the exit code (-1 when it had to be killed).
  int Terminate();

 private:
  pid_t pid_ = -1;
};

// A socket created inside the namespace (it stays there; any thread can
// use it). Owns the descriptor.
class NetnsSocket {
 public:
  NetnsSocket() = default;
  explicit NetnsSocket(int fd) : fd_(fd) {}
  NetnsSocket(NetnsSocket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  NetnsSocket& operator=(NetnsSocket&& other) noexcept;
  ~NetnsSocket();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// Sockets of either family: `family` is AF_INET (default) or AF_INET6; the
// functions that take an address use its family. AF_INET6 sockets are
// IPv6-only (no v4-mapped traffic on them).
absl::StatusOr<NetnsSocket> SocketIn(const std::string& netns_path, int type,
                                     int family = AF_INET);
// TCP listener on the family's wildcard address (0.0.0.0 or ::), `port`.
absl::StatusOr<NetnsSocket> ListenTcp(const std::string& netns_path, uint16_t port,
                                      int family = AF_INET);
// UDP socket bound to the family's wildcard address, `port` (0: any port).
absl::StatusOr<NetnsSocket> BindUdp(const std::string& netns_path, uint16_t port,
                                    int family = AF_INET);
// Connects from the namespace; DEADLINE_EXCEEDED when nothing answers.
absl::StatusOr<NetnsSocket> ConnectTcp(const std::string& netns_path, const std::string& ip,
                                       uint16_t port, std::chrono::milliseconds timeout);
// Accepts one connection within the timeout.
absl::StatusOr<NetnsSocket> Accept(const NetnsSocket& listener, std::chrono::milliseconds timeout);
// Sends `data` and reads exactly data.size() bytes back within the timeout
// (the peer is expected to echo or answer with as many bytes).
absl::Status SendAll(const NetnsSocket& socket, const std::string& data);
absl::StatusOr<std::string> ReceiveExactly(const NetnsSocket& socket, size_t size,
                                           std::chrono::milliseconds timeout);
absl::Status SendUdp(const NetnsSocket& socket, const std::string& ip, uint16_t port,
                     const std::string& data);
// One datagram within the timeout, with the sender's port.
absl::StatusOr<std::pair<std::string, uint16_t>> ReceiveUdp(const NetnsSocket& socket,
                                                           std::chrono::milliseconds timeout);

}  // namespace ebpfcni::datapath::testing
