// tput-conn-rate: TCP connection rate between two pods, the cost a policy
// datapath adds to the first packets of every connection (where iptables
// walks its whole rule list and a BPF policy does a few hash lookups).
//
//   tput-conn-rate server --listen=10.0.0.2:7777 [--threads=4] [--max_seconds=600]
//   tput-conn-rate client --connect=10.0.0.2:7777 [--threads=4] [--seconds=10]
//                         [--request_bytes=64]
//
// One connection = connect, send one request, read the same number of bytes
// back, close: the server answers and closes first (like HTTP/1.0), so the
// TIME_WAIT state stays on the server and the client does not run out of
// ephemeral ports at tens of thousands of connections per second.
//
// The client prints one JSON object: completed connections, failures by
// step, the rate over the measured time, and per-connection latency
// percentiles (connect to close, microseconds).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/status/statusor.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

ABSL_FLAG(std::string, listen, "", "server: IPv4 address:port to listen on");
ABSL_FLAG(std::string, connect, "", "client: IPv4 address:port of the server");
ABSL_FLAG(int, threads, 4, "concurrent connections (client) / accepting threads (server)");
ABSL_FLAG(double, seconds, 10, "client: how long to open connections");
ABSL_FLAG(int, request_bytes, 64, "bytes of the request and of the response");
ABSL_FLAG(int, max_seconds, 600,
          "server: exit after this long even if nobody stops it (a bench that dies "
          "must not leave a server behind)");
ABSL_FLAG(int, io_timeout_ms, 2000, "client: a connect, send or receive slower than this fails");

namespace {

using Clock = std::chrono::steady_clock;

// Closes the descriptor when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::StatusOr<sockaddr_in> ParseAddress(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not ADDRESS:PORT"));
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  int port = 0;
  if (inet_pton(AF_INET, text.substr(0, colon).c_str(), &address.sin_addr) != 1 ||
      !absl::SimpleAtoi(text.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not an IPv4 ADDRESS:PORT"));
  }
  address.sin_port = htons(static_cast<uint16_t>(port));
  return address;
}

// Moves exactly `size` bytes with `step` (a recv or send of what is left);
// false on EOF, error or timeout.
template <typename Step>
bool TransferFully(char* buffer, size_t size, Step step) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = step(buffer + done, size - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  return true;
}

bool ReadFully(int fd, char* buffer, size_t size) {
  return TransferFully(buffer, size, [fd](char* at, size_t left) { return recv(fd, at, left, 0); });
}

bool WriteFully(int fd, const char* buffer, size_t size) {
  // send() does not write through the pointer; the cast only lets both
  // directions share one loop.
  return TransferFully(const_cast<char*>(buffer), size,
                       [fd](char* at, size_t left) { return send(fd, at, left, MSG_NOSIGNAL); });
}

// --- server ------------------------------------------------------------------

int RunServer(const sockaddr_in& address, int threads, size_t request_bytes, int max_seconds) {
  Fd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) {
    std::perror("socket");
    return 1;
  }
  int one = 1;
  setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    std::perror("bind");
    return 1;
  }
  // A deep backlog: client threads reconnect immediately, and a full queue
  // would show up as SYN retransmits (1 s each), not as datapath cost.
  if (listen(listener.get(), 4096) != 0) {
    std::perror("listen");
    return 1;
  }
  // The lifetime bound: SIGALRM's default action ends the process.
  alarm(static_cast<unsigned>(max_seconds));
  std::fprintf(stderr, "listening with %d threads\n", threads);

  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([&listener, request_bytes] {
      std::vector<char> buffer(request_bytes);
      for (;;) {
        int fd = accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
          std::perror("accept");
          return;
        }
        Fd connection(fd);
        timeval timeout{2, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
        int nodelay = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
        if (ReadFully(fd, buffer.data(), buffer.size())) {
          WriteFully(fd, buffer.data(), buffer.size());
        }
        // Closing here, before the client does, keeps TIME_WAIT on this side.
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  return 1;  // only reached when accept failed for good
}

// --- client ------------------------------------------------------------------

enum class Failure { kSocket, kConnect, kSend, kReceive, kCount };

struct WorkerResult {
  uint64_t completed = 0;
  uint64_t failures[static_cast<int>(Failure::kCount)] = {};
  std::vector<uint32_t> latencies_us;
};

// One connection: connect, request, response, close. Returns the failed step.
std::optional<Failure> OneConnection(const sockaddr_in& address, const std::vector<char>& request,
                                     std::vector<char>& response, const timeval& timeout) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Failure::kSocket;
  // SO_SNDTIMEO also bounds a blocking connect().
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  int nodelay = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return Failure::kConnect;
  }
  if (!WriteFully(fd.get(), request.data(), request.size())) return Failure::kSend;
  if (!ReadFully(fd.get(), response.data(), response.size())) return Failure::kReceive;
  return std::nullopt;
}

uint32_t Percentile(const std::vector<uint32_t>& sorted, double fraction) {
  if (sorted.empty()) return 0;
  // Nearest rank.
  size_t rank = static_cast<size_t>(fraction * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

int RunClient(const sockaddr_in& address, int threads, double seconds, size_t request_bytes,
              int io_timeout_ms) {
  const auto duration = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const timeval timeout{io_timeout_ms / 1000, (io_timeout_ms % 1000) * 1000};
  std::vector<WorkerResult> results(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + duration;
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back([&, i] {
      WorkerResult& result = results[static_cast<size_t>(i)];
      result.latencies_us.reserve(1 << 16);
      std::vector<char> request(request_bytes, 'r');
      std::vector<char> response(request_bytes);
      // The loop is bounded by the deadline: every step below is bounded by
      // the I/O timeout.
      for (Clock::time_point now = Clock::now(); now < deadline;) {
        std::optional<Failure> failure = OneConnection(address, request, response, timeout);
        Clock::time_point end = Clock::now();
        if (failure) {
          ++result.failures[static_cast<int>(*failure)];
        } else {
          ++result.completed;
          result.latencies_us.push_back(static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(end - now).count()));
        }
        now = end;
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  WorkerResult total;
  for (WorkerResult& result : results) {
    total.completed += result.completed;
    for (int f = 0; f < static_cast<int>(Failure::kCount); ++f) total.failures[f] += result.failures[f];
    total.latencies_us.insert(total.latencies_us.end(), result.latencies_us.begin(),
                              result.latencies_us.end());
  }
  std::sort(total.latencies_us.begin(), total.latencies_us.end());
  std::printf(
      "{\"threads\": %d, \"seconds\": %.3f, \"completed\": %llu, \"rate_per_s\": %.1f, "
      "\"failed_socket\": %llu, \"failed_connect\": %llu, \"failed_send\": %llu, "
      "\"failed_receive\": %llu, \"latency_us_p50\": %u, \"latency_us_p99\": %u, "
      "\"latency_us_max\": %u}\n",
      threads, elapsed, static_cast<unsigned long long>(total.completed),
      static_cast<double>(total.completed) / elapsed,
      static_cast<unsigned long long>(total.failures[static_cast<int>(Failure::kSocket)]),
      static_cast<unsigned long long>(total.failures[static_cast<int>(Failure::kConnect)]),
      static_cast<unsigned long long>(total.failures[static_cast<int>(Failure::kSend)]),
      static_cast<unsigned long long>(total.failures[static_cast<int>(Failure::kReceive)]),
      Percentile(total.latencies_us, 0.50), Percentile(total.latencies_us, 0.99),
      total.latencies_us.empty() ? 0 : total.latencies_us.back());
  // Nothing got through: the caller's topology or policy is broken, which a
  // rate of 0 would hide in a table.
  return total.completed > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "tput-conn-rate server --listen=IP:PORT | client --connect=IP:PORT --threads=N --seconds=T");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string mode = args.size() == 2 ? args[1] : "";
  const int threads = absl::GetFlag(FLAGS_threads);
  const int request_bytes = absl::GetFlag(FLAGS_request_bytes);
  if (threads < 1 || threads > 1024 || request_bytes < 1 || request_bytes > (1 << 20)) {
    std::fprintf(stderr, "--threads must be 1..1024 and --request_bytes 1..1048576\n");
    return 2;
  }
  if (mode == "server") {
    absl::StatusOr<sockaddr_in> address = ParseAddress(absl::GetFlag(FLAGS_listen));
    if (!address.ok() || absl::GetFlag(FLAGS_max_seconds) < 1) {
      std::fprintf(stderr, "server needs --listen=IP:PORT and --max_seconds >= 1: %s\n",
                   address.status().ToString().c_str());
      return 2;
    }
    return RunServer(*address, threads, static_cast<size_t>(request_bytes),
                     absl::GetFlag(FLAGS_max_seconds));
  }
  if (mode == "client") {
    absl::StatusOr<sockaddr_in> address = ParseAddress(absl::GetFlag(FLAGS_connect));
    const double seconds = absl::GetFlag(FLAGS_seconds);
    if (!address.ok() || !(seconds > 0 && seconds <= 3600)) {
      std::fprintf(stderr, "client needs --connect=IP:PORT and 0 < --seconds <= 3600: %s\n",
                   address.status().ToString().c_str());
      return 2;
    }
    return RunClient(*address, threads, seconds, static_cast<size_t>(request_bytes),
                     std::max(1, absl::GetFlag(FLAGS_io_timeout_ms)));
  }
  std::fprintf(stderr, "usage: %s\n", absl::ProgramUsageMessage().data());
  return 2;
}
