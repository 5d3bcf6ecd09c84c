#pragma once
// Network namespace handles and thread-local switching.
//
// setns(CLONE_NEWNET) changes the namespace of the calling thread only, so a
// multi-threaded process can configure a pod's namespace from one thread
// while others keep working in the host namespace. Netlink sockets and
// /proc/sys/net files bind to the namespace of the thread that creates/opens
// them, which is why callers open those inside InNetns().
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "cni/net/unique_fd.h"

namespace ebpfcni::net {

// Opens path and verifies it is a network namespace handle (a bind-mounted
// netns such as /var/run/netns/x, or /proc/<pid>/ns/net).
// NOT_FOUND when the path does not exist, INVALID_ARGUMENT when it exists but
// is not a network namespace, PERMISSION_DENIED / INTERNAL otherwise.
absl::StatusOr<UniqueFd> OpenNetns(const std::string& path);

// Handle of the calling thread's current network namespace.
absl::StatusOr<UniqueFd> OpenCurrentNetns();

// Moves the calling thread into a namespace for the lifetime of the object
// and moves it back on destruction, whatever path leaves the scope. Failing
// to move back would leave the thread silently configuring the wrong
// namespace, so that case terminates the process.
class ScopedNetnsSwitch {
 public:
  ScopedNetnsSwitch(const ScopedNetnsSwitch&) = delete;
  ScopedNetnsSwitch& operator=(const ScopedNetnsSwitch&) = delete;
  ~ScopedNetnsSwitch();

  // Enters target_netns_fd; the returned object restores on destruction.
  static absl::Status Enter(int target_netns_fd, std::unique_ptr<ScopedNetnsSwitch>* out);

 private:
  explicit ScopedNetnsSwitch(UniqueFd original) : original_(std::move(original)) {}
  UniqueFd original_;
};

// Runs fn() with the calling thread inside the namespace netns_fd and
// returns its result; fn returns absl::Status or absl::StatusOr<T>.
template <typename Fn>
auto InNetns(int netns_fd, Fn&& fn) -> std::invoke_result_t<Fn> {
  std::unique_ptr<ScopedNetnsSwitch> guard;
  if (absl::Status entered = ScopedNetnsSwitch::Enter(netns_fd, &guard); !entered.ok()) {
    return entered;
  }
  return std::forward<Fn>(fn)();
}

}  // namespace ebpfcni::net
