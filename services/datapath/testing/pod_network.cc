#include "services/datapath/testing/pod_network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/strip.h>

#include "services/datapath/testing/kernel_fixtures.h"

extern char** environ;

namespace ebpfcni::datapath::testing {
namespace {

absl::Status ErrnoStatus(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Runs `body` on a thread that has entered the namespace (setns only moves
// the calling thread).
template <typename Body>
auto InNetns(const std::string& netns_path, Body body) -> decltype(body()) {
  decltype(body()) result = absl::InternalError("not run");
  std::thread worker([&] {
    int ns_fd = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0 || setns(ns_fd, CLONE_NEWNET) != 0) {
      result = ErrnoStatus(absl::StrCat("entering ", netns_path));
      if (ns_fd >= 0) close(ns_fd);
      return;
    }
    close(ns_fd);
    result = body();
  });
  worker.join();
  return result;
}

// A socket address of either family: IPv6 when `ip` has a colon.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  SocketAddress(const std::string& ip, uint16_t port) {
    if (ip.find(':') != std::string::npos) {
      auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(port);
      inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr);
      length = sizeof(sockaddr_in6);
    } else {
      auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
      v4->sin_family = AF_INET;
      v4->sin_port = htons(port);
      inet_pton(AF_INET, ip.c_str(), &v4->sin_addr);
      length = sizeof(sockaddr_in);
    }
  }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  // "ip:port" or "[ip]:port", for messages.
  static std::string Describe(const std::string& ip, uint16_t port) {
    return ip.find(':') != std::string::npos ? absl::StrCat("[", ip, "]:", port)
                                             : absl::StrCat(ip, ":", port);
  }
};

std::string WildcardOf(int family) { return family == AF_INET6 ? "::" : "0.0.0.0"; }

// IPv6 sockets carry IPv6 only: a test that asks for one family must not
// pass on the other's traffic.
void SetV6Only(const NetnsSocket& socket, int family) {
  int one = 1;
  if (family == AF_INET6) setsockopt(socket.fd(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
}

bool WaitReadable(int fd, std::chrono::milliseconds timeout, short events = POLLIN) {
  pollfd p{fd, events, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & events);
}

}  // namespace

ScopedTwoPodNode::ScopedTwoPodNode(const std::string& suffix) {
  std::string prefix = absl::StrCat(TestTag(), "-", suffix);
  node_netns_ = prefix + "-node";
  node_path_ = "/run/netns/" + node_netns_;
  a_.netns = prefix + "-pa";
  b_.netns = prefix + "-pb";
  a_.host_ifname = absl::StrCat(TestTag(), suffix, "a");
  b_.host_ifname = absl::StrCat(TestTag(), suffix, "b");
  for (const std::string& ns : {node_netns_, a_.netns, b_.netns}) {
    RunCommand(absl::StrCat("ip netns del ", ns, " 2>/dev/null"));
  }
  std::string n = "ip -n " + node_netns_ + " ";
  ok_ = RunCommand("ip netns add " + node_netns_) == 0 &&
        RunCommand(n + "link set lo up") == 0 &&
        // Per-namespace sysctls: only the test's node namespace forwards.
        RunCommand("ip netns exec " + node_netns_ + " sysctl -qw net.ipv4.ip_forward=1") == 0 &&
        AddPod(a_, "a", "10.252.0.2") && AddPod(b_, "b", "10.252.0.3");
}

bool ScopedTwoPodNode::AddPod(TestPod& pod, const std::string& name, const std::string& ip) {
  (void)name;
  pod.netns_path = "/run/netns/" + pod.netns;
  pod.ip = ip;
  std::string n = "ip -n " + node_netns_ + " ";
  std::string p = "ip -n " + pod.netns + " ";
  bool ok = RunCommand("ip netns add " + pod.netns) == 0 &&
            RunCommand(absl::StrCat(n, "link add ", pod.host_ifname, " type veth peer name eth0 netns ",
                                    pod.netns)) == 0 &&
            RunCommand(n + "link set dev " + pod.host_ifname + " addrgenmode none") == 0 &&
            RunCommand(p + "link set dev eth0 addrgenmode none") == 0 &&
            // Routed veth like the CNI's: the host side answers for a
            // link-local gateway, the pod address is a /32 routed to the veth.
            RunCommand(n + "addr add 169.254.1.1/32 dev " + pod.host_ifname) == 0 &&
            RunCommand(n + "link set dev " + pod.host_ifname + " up") == 0 &&
            RunCommand(n + "route add " + ip + "/32 dev " + pod.host_ifname) == 0 &&
            RunCommand(p + "link set lo up") == 0 &&
            RunCommand(p + "addr add " + ip + "/32 dev eth0") == 0 &&
            RunCommand(p + "link set dev eth0 up") == 0 &&
            RunCommand(p + "route add 169.254.1.1/32 dev eth0 scope link") == 0 &&
            RunCommand(p + "route add default via 169.254.1.1 dev eth0") == 0;
  if (!ok) return false;
  absl::StatusOr<std::string> index = CommandOutput(
      absl::StrCat("ip netns exec ", node_netns_, " cat /sys/class/net/", pod.host_ifname, "/ifindex"));
  return index.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*index), &pod.host_ifindex);
}

ScopedTwoPodNode::~ScopedTwoPodNode() {
  // Deleting the namespaces deletes the veths with them.
  for (const std::string& ns : {a_.netns, b_.netns, node_netns_}) {
    RunCommand(absl::StrCat("ip netns del ", ns, " 2>/dev/null"));
  }
}

NetnsProcess::NetnsProcess(const std::string& netns_path, std::vector<std::string> args) {
  std::vector<std::string> full = {"/usr/bin/nsenter", "--net=" + netns_path, "--"};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : full) argv.push_back(arg.data());
  argv.push_back(nullptr);
  if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
}

NetnsProcess::~NetnsProcess() { Kill9(); }

void NetnsProcess::Kill9() {
  // nsenter execs the program, so the pid is the daemon's own.
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

int NetnsProcess::Terminate() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Kill9();
  return -1;
}

NetnsSocket& NetnsSocket::operator=(NetnsSocket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

NetnsSocket::~NetnsSocket() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<NetnsSocket> SocketIn(const std::string& netns_path, int type, int family) {
  return InNetns(netns_path, [&]() -> absl::StatusOr<NetnsSocket> {
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus("socket");
    return NetnsSocket(fd);
  });
}

absl::StatusOr<NetnsSocket> ListenTcp(const std::string& netns_path, uint16_t port, int family) {
  absl::StatusOr<NetnsSocket> socket = SocketIn(netns_path, SOCK_STREAM, family);
  if (!socket.ok()) return socket.status();
  int one = 1;
  setsockopt(socket->fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  SetV6Only(*socket, family);
  SocketAddress address(WildcardOf(family), port);
  if (bind(socket->fd(), address.get(), address.length) != 0 || listen(socket->fd(), 64) != 0) {
    return ErrnoStatus(
        absl::StrCat("listening on ", SocketAddress::Describe(WildcardOf(family), port)));
  }
  return socket;
}

absl::StatusOr<NetnsSocket> BindUdp(const std::string& netns_path, uint16_t port, int family) {
  absl::StatusOr<NetnsSocket> socket = SocketIn(netns_path, SOCK_DGRAM, family);
  if (!socket.ok()) return socket.status();
  SetV6Only(*socket, family);
  SocketAddress address(WildcardOf(family), port);
  if (bind(socket->fd(), address.get(), address.length) != 0) {
    return ErrnoStatus(
        absl::StrCat("binding UDP ", SocketAddress::Describe(WildcardOf(family), port)));
  }
  return socket;
}

absl::StatusOr<NetnsSocket> ConnectTcp(const std::string& netns_path, const std::string& ip,
                                       uint16_t port, std::chrono::milliseconds timeout) {
  SocketAddress address(ip, port);
  const std::string target = SocketAddress::Describe(ip, port);
  absl::StatusOr<NetnsSocket> socket =
      SocketIn(netns_path, SOCK_STREAM | SOCK_NONBLOCK, address.family());
  if (!socket.ok()) return socket.status();
  if (connect(socket->fd(), address.get(), address.length) != 0 && errno != EINPROGRESS) {
    return ErrnoStatus(absl::StrCat("connecting to ", target));
  }
  if (!WaitReadable(socket->fd(), timeout, POLLOUT)) {
    return absl::DeadlineExceededError(absl::StrCat("no answer from ", target));
  }
  int error = 0;
  socklen_t length = sizeof(error);
  getsockopt(socket->fd(), SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) {
    return absl::UnavailableError(
        absl::StrCat("connecting to ", target, ": ", std::strerror(error)));
  }
  // Back to blocking; reads use poll with their own timeouts.
  fcntl(socket->fd(), F_SETFL, fcntl(socket->fd(), F_GETFL) & ~O_NONBLOCK);
  return socket;
}

absl::StatusOr<NetnsSocket> Accept(const NetnsSocket& listener, std::chrono::milliseconds timeout) {
  if (!WaitReadable(listener.fd(), timeout)) {
    return absl::DeadlineExceededError("no connection to accept");
  }
  int fd = accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return ErrnoStatus("accept");
  return NetnsSocket(fd);
}

absl::Status SendAll(const NetnsSocket& socket, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(socket.fd(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("send");
    }
    sent += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReceiveExactly(const NetnsSocket& socket, size_t size,
                                           std::chrono::milliseconds timeout) {
  std::string data;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (data.size() < size) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !WaitReadable(socket.fd(), left)) {
      return absl::DeadlineExceededError(
          absl::StrCat("received ", data.size(), " of ", size, " bytes in time"));
    }
    char buffer[4096];
    ssize_t n = recv(socket.fd(), buffer, std::min(sizeof(buffer), size - data.size()), 0);
    if (n == 0) return absl::UnavailableError("connection closed by the peer");
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("recv");
    }
    data.append(buffer, static_cast<size_t>(n));
  }
  return data;
}

absl::Status SendUdp(const NetnsSocket& socket, const std::string& ip, uint16_t port,
                     const std::string& data) {
  SocketAddress address(ip, port);
  if (sendto(socket.fd(), data.data(), data.size(), 0, address.get(), address.length) !=
      static_cast<ssize_t>(data.size())) {
    return ErrnoStatus(absl::StrCat("sending UDP to ", SocketAddress::Describe(ip, port)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<std::string, uint16_t>> ReceiveUdp(const NetnsSocket& socket,
                                                           std::chrono::milliseconds timeout) {
  if (!WaitReadable(socket.fd(), timeout)) {
    return absl::DeadlineExceededError("no datagram in time");
  }
  char buffer[65536];  // a whole datagram, fragmented or not
  sockaddr_storage from{};
  socklen_t length = sizeof(from);
  ssize_t n = recvfrom(socket.fd(), buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&from),
                       &length);
  if (n < 0) return ErrnoStatus("recvfrom");
  uint16_t port = from.ss_family == AF_INET6
                      ? reinterpret_cast<const sockaddr_in6*>(&from)->sin6_port
                      : reinterpret_cast<const sockaddr_in*>(&from)->sin_port;
  return std::make_pair(std::string(buffer, static_cast<size_t>(n)), ntohs(port));
}

}  // namespace ebpfcni::datapath::testing
