#include "cni/net/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <absl/strings/str_cat.h>

namespace ebpfcni::net {
namespace {

absl::Status ErrnoStatus(int err, const std::string& message) {
  std::string text = absl::StrCat(message, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(text);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(text);
    default:
      return absl::InternalError(text);
  }
}

}  // namespace

absl::StatusOr<UniqueFd> OpenNetns(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("network namespace path is empty");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("cannot open network namespace ", path));
  }
  // Namespace handles live on nsfs; a stale bind-mount target (an ordinary
  // empty file left behind after the namespace was unmounted) does not.
  struct statfs fs {};
  if (::fstatfs(fd.get(), &fs) != 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot statfs ", path));
  }
  if (static_cast<unsigned long>(fs.f_type) != NSFS_MAGIC) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a namespace handle (expected a bind-mounted network "
                           "namespace or /proc/<pid>/ns/net)"));
  }
  int type = ::ioctl(fd.get(), NS_GET_NSTYPE);
  if (type < 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot query namespace type of ", path));
  }
  if (type != CLONE_NEWNET) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a namespace handle but not a network namespace"));
  }
  return fd;
}

absl::StatusOr<UniqueFd> OpenCurrentNetns() {
  // thread-self, not self: setns() is per thread and /proc/self names the
  // thread-group leader, which may be in a different namespace.
  UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "cannot open the current network namespace");
  return fd;
}

absl::Status ScopedNetnsSwitch::Enter(int target_netns_fd,
                                      std::unique_ptr<ScopedNetnsSwitch>* out) {
  absl::StatusOr<UniqueFd> original = OpenCurrentNetns();
  if (!original.ok()) return original.status();
  if (::setns(target_netns_fd, CLONE_NEWNET) != 0) {
    return ErrnoStatus(errno, "cannot enter network namespace (setns)");
  }
  out->reset(new ScopedNetnsSwitch(*std::move(original)));
  return absl::OkStatus();
}

ScopedNetnsSwitch::~ScopedNetnsSwitch() {
  if (::setns(original_.get(), CLONE_NEWNET) != 0) {
    // Continuing would apply host configuration inside a pod (or the reverse).
    std::fprintf(stderr, "ebpf-cni: cannot return to the original network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
}

}  // namespace ebpfcni::net
