#pragma once
// A child process for tests and benchmarks (etcd, identity replicas): its
// output goes to a log file, it dies with the thread that started it
// (PR_SET_PDEATHSIG) so a crashed test leaves nothing behind, and the
// destructor SIGKILLs and reaps it.
#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

namespace ebpfcni::identity::testsupport {

class ChildProcess {
 public:
  static absl::StatusOr<ChildProcess> Start(const std::vector<std::string>& argv, const std::string& log_path);
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept : pid_(other.pid_) { other.pid_ = -1; }
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess() { Kill(); }

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // SIGKILL and reap (no-op when not running).
  void Kill();
  // Sends `signal` and waits up to `timeout` for the exit; SIGKILLs after.
  // Returns the exit status as waitpid reports it.
  int Stop(int signal, std::chrono::milliseconds timeout);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
absl::StatusOr<int> PickFreeLoopbackPort();

}  // namespace ebpfcni::identity::testsupport
