#include "cni/net/testing/test_netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>

#include "cni/net/netlink.h"
#include "cni/net/netns.h"

namespace ebpfcni::net::testing {
namespace {

constexpr char kNetnsDir[] = "/run/netns";

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<TestNetns> TestNetns::Create(const std::string& name) {
  ::mkdir("/run", 0755);
  if (::mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST) return Errno("mkdir /run/netns");
  std::string path = absl::StrCat(kNetnsDir, "/", name);
  UniqueFd placeholder(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (!placeholder.valid()) return Errno(absl::StrCat("create ", path));
  placeholder.reset();

  // unshare() on a throw-away thread: only that thread changes namespace,
  // and the bind mount keeps the namespace alive after the thread exits.
  absl::Status created;
  std::thread worker([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      created = Errno("unshare(CLONE_NEWNET)");
      return;
    }
    if (::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      created = Errno(absl::StrCat("bind mount netns on ", path));
    }
  });
  worker.join();
  if (!created.ok()) {
    ::unlink(path.c_str());
    return created;
  }
  absl::StatusOr<UniqueFd> fd = OpenNetns(path);
  if (!fd.ok()) {
    ::umount2(path.c_str(), MNT_DETACH);
    ::unlink(path.c_str());
    return fd.status();
  }
  return TestNetns(path, *std::move(fd));
}

TestNetns::TestNetns(TestNetns&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::move(other.fd_)) {
  other.path_.clear();
}

TestNetns::~TestNetns() {
  if (path_.empty()) return;
  fd_.reset();
  ::umount2(path_.c_str(), MNT_DETACH);
  ::unlink(path_.c_str());
}

absl::StatusOr<UniqueFd> SocketInNetns(int netns_fd, int domain, int type) {
  return InNetns(netns_fd, [&]() -> absl::StatusOr<UniqueFd> {
    UniqueFd fd(::socket(domain, type | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return Errno("socket");
    return fd;
  });
}

void DeleteHostLinksWithPrefix(const std::string& prefix) {
  if (prefix.empty()) return;
  absl::StatusOr<NlSocketPtr> sk = ConnectRouteSocket();
  if (!sk.ok()) return;
  nl_cache* raw = nullptr;
  if (rtnl_link_alloc_cache(sk->get(), AF_UNSPEC, &raw) < 0) return;
  CachePtr cache(raw);
  std::vector<std::string> names;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj != nullptr;
       obj = nl_cache_get_next(obj)) {
    const char* name = rtnl_link_get_name(reinterpret_cast<rtnl_link*>(obj));
    if (name != nullptr && absl::StartsWith(name, prefix)) names.emplace_back(name);
  }
  for (const std::string& name : names) (void)DeleteLinkIfExists(sk->get(), name);
}

}  // namespace ebpfcni::net::testing
