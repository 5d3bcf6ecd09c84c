// netpol-prober: real traffic for the NetworkPolicy reachability tests.
//
//   netpol-prober serve --netns=PATH --ports=80,81 [--duration_s=900]
//     Inside the pod's network namespace: a TCP listener (accepts, echoes
//     every line until the client closes) and a UDP echo on every port, IPv4 and IPv6 (one
//     dual-stack socket when the namespace has IPv6). SCTP listeners too when
//     the kernel has SCTP. Prints "ready" once every socket is bound, so the
//     harness knows when to start probing. Exits after --duration_s (a test
//     that dies without cleanup leaves nothing running for long).
//
//   netpol-prober probe [--timeout_ms=400] [--udp_attempts=2] [--parallel=512]
//     Reads probes from stdin, one per line:
//       LABEL SOURCE_NETNS_PATH DESTINATION_IP PORT tcp|udp|sctp|icmp [SOURCE_IP]
//     (SOURCE_NETNS_PATH "-": the namespace the prober was started in),
//     runs them all concurrently (worker threads that setns() into the source
//     namespace; a network namespace switch only affects the calling thread)
//     and prints one line per probe, in input order:
//       LABEL ok|timeout|refused|unreachable|error DETAIL
//     "ok" means the payload came back: the request and its reply both
//     passed the datapath. TCP: connect + one echoed line, each step bounded
//     by --timeout_ms. UDP: send, expect the echo within --timeout_ms,
//     --udp_attempts tries in all (a lost datagram is not a verdict).
//     ICMP: an echo request (ICMPv6 for an IPv6 destination; PORT is ignored,
//     0 is fine), answered by the destination's kernel; --udp_attempts tries.
//
// Only the test's own namespaces are ever addressed: the harness builds the
// probe list from the pods it created.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

ABSL_FLAG(std::string, netns, "", "serve: network namespace path to enter first (empty: stay)");
ABSL_FLAG(std::string, ports, "80,81", "serve: comma-separated ports (TCP, UDP and SCTP each)");
ABSL_FLAG(int, duration_s, 900, "serve: exit after this many seconds");
ABSL_FLAG(int, timeout_ms, 400, "probe: bound on each connect / reply wait");
ABSL_FLAG(int, udp_attempts, 2, "probe: UDP datagrams sent before giving up");
ABSL_FLAG(int, parallel, 512, "probe: worker threads (probes in flight at once)");

namespace {

constexpr int kProtoSctp = 132;

// RAII file descriptor: every early return closes its socket.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_;
};

std::string ErrnoText(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

bool EnterNetns(const std::string& path, std::string* error) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    *error = ErrnoText(("open " + path).c_str());
    return false;
  }
  if (setns(fd.get(), CLONE_NEWNET) != 0) {
    *error = ErrnoText(("setns " + path).c_str());
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- serve ----

// A socket bound to the port on every address: dual-stack IPv6 when the
// namespace has IPv6, else IPv4 only.
Fd BindAny(int type, int protocol, uint16_t port, std::string* error) {
  Fd fd(socket(AF_INET6, type | SOCK_CLOEXEC, protocol));
  if (fd.valid()) {
    int off = 0, on = 1;
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_any;
    addr.sin6_port = htons(port);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  }
  Fd fd4(socket(AF_INET, type | SOCK_CLOEXEC, protocol));
  if (!fd4.valid()) {
    *error = ErrnoText("socket");
    return Fd();
  }
  int on = 1;
  setsockopt(fd4.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(port);
  if (bind(fd4.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    *error = ErrnoText(absl::StrCat("bind port ", port).c_str());
    return Fd();
  }
  return fd4;
}

// Echoes every line of a connection back until the client closes it (a
// probe sends one line and closes; a held connection keeps exchanging lines
// while the test changes policy). A connection idle for 10 s is closed.
void EchoLines(int raw_fd) {
  Fd fd(raw_fd);
  timeval timeout{10, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  std::string pending;
  char buf[256];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t end = pending.rfind('\n');
    if (end == std::string::npos && pending.size() < 1024) continue;
    size_t length = end == std::string::npos ? pending.size() : end + 1;
    if (write(fd.get(), pending.data(), length) != static_cast<ssize_t>(length)) break;
    pending.erase(0, length);
  }
  if (!pending.empty()) (void)!write(fd.get(), pending.data(), pending.size());
}

void StreamAcceptLoop(Fd listener) {
  for (;;) {
    int conn = accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::cerr << ErrnoText("accept") << "\n";
      return;
    }
    std::thread(EchoLines, conn).detach();
  }
}

// Echoes every datagram from the address it was sent to: a namespace with
// several addresses (ext1/ext2) must not answer from its primary one, or
// the prober's connected socket would drop the reply. IP(V6)_PKTINFO gives
// the destination address of each datagram and sets the reply's source.
void UdpEchoLoop(Fd fd) {
  int on = 1;
  setsockopt(fd.get(), IPPROTO_IP, IP_PKTINFO, &on, sizeof(on));
  setsockopt(fd.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on));
  char buf[2048];
  alignas(cmsghdr) char control[256];
  for (;;) {
    sockaddr_storage peer{};
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_name = &peer;
    msg.msg_namelen = sizeof(peer);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd.get(), &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::cerr << ErrnoText("recvmsg") << "\n";
      return;
    }
    // Reply control: only the source address, no interface (routing picks it).
    alignas(cmsghdr) char reply_control[256];
    size_t reply_len = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      cmsghdr* out = reinterpret_cast<cmsghdr*>(reply_control);
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof(info));
        in_pktinfo reply{};
        reply.ipi_spec_dst = info.ipi_addr;
        out->cmsg_level = IPPROTO_IP;
        out->cmsg_type = IP_PKTINFO;
        out->cmsg_len = CMSG_LEN(sizeof(reply));
        std::memcpy(CMSG_DATA(out), &reply, sizeof(reply));
        reply_len = CMSG_SPACE(sizeof(reply));
        break;
      }
      if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        in6_pktinfo info;
        std::memcpy(&info, CMSG_DATA(c), sizeof(info));
        info.ipi6_ifindex = 0;
        out->cmsg_level = IPPROTO_IPV6;
        out->cmsg_type = IPV6_PKTINFO;
        out->cmsg_len = CMSG_LEN(sizeof(info));
        std::memcpy(CMSG_DATA(out), &info, sizeof(info));
        reply_len = CMSG_SPACE(sizeof(info));
        break;
      }
    }
    iovec reply_iov{buf, static_cast<size_t>(n)};
    msghdr reply{};
    reply.msg_name = &peer;
    reply.msg_namelen = msg.msg_namelen;
    reply.msg_iov = &reply_iov;
    reply.msg_iovlen = 1;
    reply.msg_control = reply_len > 0 ? reply_control : nullptr;
    reply.msg_controllen = reply_len;
    sendmsg(fd.get(), &reply, 0);
  }
}

int Serve() {
  std::string error;
  const std::string netns = absl::GetFlag(FLAGS_netns);
  if (!netns.empty() && !EnterNetns(netns, &error)) {
    std::cerr << "serve: " << error << "\n";
    return 1;
  }
  std::vector<uint16_t> ports;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_ports), ',', absl::SkipEmpty())) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(part, &port) || port == 0 || port > 65535) {
      std::cerr << "serve: bad port '" << part << "' in --ports\n";
      return 2;
    }
    ports.push_back(static_cast<uint16_t>(port));
  }
  // SCTP is optional: kernels built without it refuse the socket.
  const bool have_sctp = Fd(socket(AF_INET, SOCK_STREAM, kProtoSctp)).valid();
  for (uint16_t port : ports) {
    Fd tcp = BindAny(SOCK_STREAM, 0, port, &error);
    if (!tcp.valid() || listen(tcp.get(), 512) != 0) {
      std::cerr << "serve: tcp " << port << ": " << (tcp.valid() ? ErrnoText("listen") : error) << "\n";
      return 1;
    }
    Fd udp = BindAny(SOCK_DGRAM, 0, port, &error);
    if (!udp.valid()) {
      std::cerr << "serve: udp " << port << ": " << error << "\n";
      return 1;
    }
    std::thread(StreamAcceptLoop, std::move(tcp)).detach();
    std::thread(UdpEchoLoop, std::move(udp)).detach();
    if (have_sctp) {
      Fd sctp = BindAny(SOCK_STREAM, kProtoSctp, port, &error);
      if (sctp.valid() && listen(sctp.get(), 128) == 0) {
        std::thread(StreamAcceptLoop, std::move(sctp)).detach();
      } else {
        std::cerr << "serve: sctp " << port << " not served: " << error << "\n";
      }
    }
  }
  std::cout << "ready" << (have_sctp ? " sctp" : "") << std::endl;
  std::this_thread::sleep_for(std::chrono::seconds(absl::GetFlag(FLAGS_duration_s)));
  return 0;
}

// ---------------------------------------------------------------- probe ----

struct Probe {
  std::string label, netns, destination, source;
  uint16_t port = 0;
  std::string protocol;  // tcp, udp, sctp, icmp
  std::string result = "error";
  std::string detail = "not run";
};

// Either family; fills `addr` and returns its length (0 if not an address).
socklen_t ParseAddress(const std::string& ip, uint16_t port, sockaddr_storage* addr) {
  *addr = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(addr);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return sizeof(sockaddr_in);
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(addr);
  if (inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return sizeof(sockaddr_in6);
  }
  return 0;
}

// Waits for `events` on fd; false on timeout (with result/detail set).
bool WaitFor(int fd, short events, int timeout_ms, const char* step, Probe* probe) {
  pollfd pfd{fd, events, 0};
  int n;
  do {
    n = poll(&pfd, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n == 0) {
    probe->result = "timeout";
    probe->detail = absl::StrCat(step, " timed out after ", timeout_ms, " ms");
    return false;
  }
  if (n < 0) {
    probe->result = "error";
    probe->detail = ErrnoText("poll");
    return false;
  }
  return true;
}

void ClassifyErrno(int err, const char* step, Probe* probe) {
  switch (err) {
    case ECONNREFUSED:
      probe->result = "refused";
      break;
    case EHOSTUNREACH:
    case ENETUNREACH:
      probe->result = "unreachable";
      break;
    case ETIMEDOUT:
      probe->result = "timeout";
      break;
    default:
      probe->result = "error";
  }
  probe->detail = absl::StrCat(step, ": ", std::strerror(err));
}

// Socket of the destination's family, bound to the source address if given.
Fd OpenSocket(const Probe& probe, const sockaddr_storage& dst, int type, int protocol, Probe* out) {
  Fd fd(socket(dst.ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol));
  if (!fd.valid()) {
    ClassifyErrno(errno, "socket", out);
    return Fd();
  }
  if (!probe.source.empty()) {
    sockaddr_storage src;
    socklen_t len = ParseAddress(probe.source, 0, &src);
    if (len == 0 || src.ss_family != dst.ss_family ||
        bind(fd.get(), reinterpret_cast<sockaddr*>(&src), len) != 0) {
      out->result = "error";
      out->detail = len == 0 ? "bad source address" : ErrnoText(("bind " + probe.source).c_str());
      return Fd();
    }
  }
  return fd;
}

void RunStreamProbe(Probe* probe, const sockaddr_storage& dst, socklen_t len, int protocol, int timeout_ms) {
  Fd fd = OpenSocket(*probe, dst, SOCK_STREAM, protocol, probe);
  if (!fd.valid()) return;
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&dst), len) != 0 && errno != EINPROGRESS) {
    ClassifyErrno(errno, "connect", probe);
    return;
  }
  if (!WaitFor(fd.get(), POLLOUT, timeout_ms, "connect", probe)) return;
  int err = 0;
  socklen_t err_len = sizeof(err);
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
  if (err != 0) {
    ClassifyErrno(err, "connect", probe);
    return;
  }
  const std::string line = "probe " + probe->label + "\n";
  if (send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    ClassifyErrno(errno, "send", probe);
    return;
  }
  std::string reply;
  char buf[256];
  while (reply.size() < line.size()) {
    if (!WaitFor(fd.get(), POLLIN, timeout_ms, "echo", probe)) return;
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      ClassifyErrno(errno, "recv", probe);
      return;
    }
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  if (reply != line) {
    probe->result = "error";
    probe->detail = "echo mismatch";
    return;
  }
  probe->result = "ok";
  probe->detail = "echoed";
}

enum class Await { kMatched, kTimedOut, kFailed };

// Reads datagrams from fd for up to timeout_ms until `matches` accepts one.
// kFailed: recv failed (the probe's result says why).
template <typename Matches>
Await AwaitDatagram(int fd, int timeout_ms, const char* step, Probe* probe, Matches matches) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
            .count());
    if (left <= 0 || !WaitFor(fd, POLLIN, left, step, probe)) return Await::kTimedOut;
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      ClassifyErrno(errno, "recv", probe);
      return Await::kFailed;
    }
    if (matches(std::string(buf, static_cast<size_t>(n)))) return Await::kMatched;
  }
}

void RunUdpProbe(Probe* probe, const sockaddr_storage& dst, socklen_t len, int timeout_ms, int attempts) {
  Fd fd = OpenSocket(*probe, dst, SOCK_DGRAM, 0, probe);
  if (!fd.valid()) return;
  // connect(): the kernel then reports ICMP errors (port unreachable) to us.
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&dst), len) != 0) {
    ClassifyErrno(errno, "connect", probe);
    return;
  }
  const std::string payload = "probe " + probe->label;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    if (send(fd.get(), payload.data(), payload.size(), 0) < 0) {
      ClassifyErrno(errno, "send", probe);
      if (probe->result != "timeout") return;
      continue;
    }
    Await got = AwaitDatagram(fd.get(), timeout_ms, "echo", probe,
                              [&](const std::string& datagram) { return datagram == payload; });
    if (got == Await::kFailed) return;
    if (got == Await::kMatched) {
      probe->result = "ok";
      probe->detail = absl::StrCat("echoed (attempt ", attempt, ")");
      return;
    }
    probe->result = "timeout";
    probe->detail = absl::StrCat("no echo after ", attempt, " datagram(s) x ", timeout_ms, " ms");
  }
}

// Internet checksum (RFC 1071); ICMPv4 needs it from us, ICMPv6 raw sockets
// get it from the kernel (which must include the pseudo-header).
uint16_t InternetChecksum(const std::string& data) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < data.size(); i += 2) {
    sum += static_cast<uint32_t>(static_cast<uint8_t>(data[i]) << 8 | static_cast<uint8_t>(data[i + 1]));
  }
  if (data.size() % 2 == 1) sum += static_cast<uint32_t>(static_cast<uint8_t>(data.back()) << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum));
}

// Echo request through a raw socket (root: the pods' namespaces have no
// ping_group_range for unprivileged ping sockets). Each probe has its own
// identifier and the label as payload; the socket is connected to the
// destination, so it only sees that host's messages and the reply is matched
// on type, identifier and payload.
void RunIcmpProbe(Probe* probe, const sockaddr_storage& dst, socklen_t len, int timeout_ms, int attempts,
                  uint16_t identifier) {
  const bool v6 = dst.ss_family == AF_INET6;
  const int protocol = v6 ? static_cast<int>(IPPROTO_ICMPV6) : static_cast<int>(IPPROTO_ICMP);
  Fd fd = OpenSocket(*probe, dst, SOCK_RAW, protocol, probe);
  if (!fd.valid()) return;
  if (v6) {
    // Only echo replies and unreachables reach us, not the neighbour
    // discovery traffic of the namespace.
    icmp6_filter filter;
    ICMP6_FILTER_SETBLOCKALL(&filter);
    ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
    ICMP6_FILTER_SETPASS(ICMP6_DST_UNREACH, &filter);
    setsockopt(fd.get(), IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof(filter));
  }
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&dst), len) != 0) {
    ClassifyErrno(errno, "connect", probe);
    return;
  }
  const std::string payload = "probe " + probe->label;
  const uint8_t request_type = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
  const uint8_t reply_type = v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    // type, code, checksum, identifier, sequence (network order), payload
    std::string message(8, '\0');
    message[0] = static_cast<char>(request_type);
    message[4] = static_cast<char>(identifier >> 8);
    message[5] = static_cast<char>(identifier & 0xff);
    message[7] = static_cast<char>(attempt);
    message += payload;
    if (!v6) {
      uint16_t checksum = InternetChecksum(message);
      std::memcpy(&message[2], &checksum, sizeof(checksum));
    }
    if (send(fd.get(), message.data(), message.size(), 0) < 0) {
      ClassifyErrno(errno, "send", probe);
      if (probe->result != "timeout") return;
      continue;
    }
    auto is_our_reply = [&](const std::string& datagram) {
      // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
      size_t offset = 0;
      if (!v6) {
        if (datagram.size() < 20) return false;
        offset = static_cast<size_t>(datagram[0] & 0x0f) * 4;
      }
      if (datagram.size() < offset + 8) return false;
      const std::string reply = datagram.substr(offset);
      const uint16_t reply_id = static_cast<uint16_t>(static_cast<uint8_t>(reply[4]) << 8 |
                                                      static_cast<uint8_t>(reply[5]));
      return static_cast<uint8_t>(reply[0]) == reply_type && reply_id == identifier &&
             reply.compare(8, std::string::npos, payload) == 0;
    };
    Await got = AwaitDatagram(fd.get(), timeout_ms, "echo reply", probe, is_our_reply);
    if (got == Await::kFailed) return;
    if (got == Await::kMatched) {
      probe->result = "ok";
      probe->detail = absl::StrCat("echo reply (attempt ", attempt, ")");
      return;
    }
    probe->result = "timeout";
    probe->detail = absl::StrCat("no echo reply after ", attempt, " request(s) x ", timeout_ms, " ms");
  }
}

// One worker: takes probes by index until none is left. Switches netns only
// when the next probe's source differs from the current one.
// A probe whose source is "-" runs in the namespace the prober started in
// (the node): a worker that served another source first switches back.
std::string g_start_netns;
// First ICMP echo identifier of this run, random: the datapath's conntrack
// keys an echo flow on its identifier, so a run that reused the identifiers
// of an earlier one (allowed then) would ride on its entries and pass.
uint16_t g_echo_id_base = 0;

void ProbeWorker(std::vector<Probe>* probes, std::atomic<size_t>* next) {
  std::string current_netns = "-";
  const int timeout_ms = absl::GetFlag(FLAGS_timeout_ms);
  const int attempts = absl::GetFlag(FLAGS_udp_attempts);
  for (size_t i = next->fetch_add(1); i < probes->size(); i = next->fetch_add(1)) {
    Probe& probe = (*probes)[i];
    if (probe.netns != current_netns) {
      std::string error;
      if (!EnterNetns(probe.netns == "-" ? g_start_netns : probe.netns, &error)) {
        probe.result = "error";
        probe.detail = error;
        continue;
      }
      current_netns = probe.netns;
    }
    sockaddr_storage dst;
    socklen_t len = ParseAddress(probe.destination, probe.port, &dst);
    if (len == 0) {
      probe.detail = "bad destination address";
      continue;
    }
    if (probe.protocol == "tcp") {
      RunStreamProbe(&probe, dst, len, 0, timeout_ms);
    } else if (probe.protocol == "sctp") {
      RunStreamProbe(&probe, dst, len, kProtoSctp, timeout_ms);
    } else if (probe.protocol == "icmp") {
      // Distinct identifiers for the probes of this run (up to 65536).
      RunIcmpProbe(&probe, dst, len, timeout_ms, attempts, static_cast<uint16_t>(g_echo_id_base + i));
    } else {
      RunUdpProbe(&probe, dst, len, timeout_ms, attempts);
    }
  }
}

int RunProbes() {
  std::vector<Probe> probes;
  std::string line;
  int line_number = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    Probe probe;
    uint32_t port = 0;
    const bool parsed = static_cast<bool>(fields >> probe.label >> probe.netns >> probe.destination >> port >>
                                          probe.protocol);
    const bool known_protocol = probe.protocol == "tcp" || probe.protocol == "udp" ||
                                probe.protocol == "sctp" || probe.protocol == "icmp";
    // ICMP has no port: any number (0 included) is accepted and ignored.
    if (!parsed || !known_protocol || port > 65535 || (port == 0 && probe.protocol != "icmp")) {
      std::cerr << "probe: line " << line_number
                << ": want 'LABEL NETNS_PATH DESTINATION_IP PORT tcp|udp|sctp|icmp [SOURCE_IP]', got '" << line
                << "'\n";
      return 2;
    }
    fields >> probe.source;
    probe.port = static_cast<uint16_t>(port);
    probes.push_back(std::move(probe));
  }
  // Each worker thread inherits this namespace; "-" probes come back to it.
  // The path names this process's namespace as long as the process lives.
  g_start_netns = "/proc/" + std::to_string(getpid()) + "/ns/net";
  g_echo_id_base = static_cast<uint16_t>(std::random_device()());
  std::atomic<size_t> next{0};
  const size_t workers =
      std::min(probes.size(), static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_parallel))));
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t i = 0; i < workers; ++i) threads.emplace_back(ProbeWorker, &probes, &next);
  for (auto& thread : threads) thread.join();
  for (const Probe& probe : probes) std::cout << probe.label << " " << probe.result << " " << probe.detail << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "netpol-prober serve --netns=PATH --ports=80,81 | netpol-prober probe < probes "
      "(LABEL NETNS_PATH DST_IP PORT tcp|udp|sctp|icmp [SRC_IP] per line)");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::cerr << "usage: netpol-prober serve|probe [flags] (see --help)\n";
    return 2;
  }
  const std::string mode = args[1];
  if (mode == "serve") return Serve();
  if (mode == "probe") return RunProbes();
  std::cerr << "unknown mode '" << mode << "' (serve|probe)\n";
  return 2;
}
