#pragma once
// Small pieces every userspace accessor of the datapath's BPF maps needs:
// an owned descriptor, errno -> absl::Status, and bounded key iteration.
#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>

namespace ebpfcni::datapath {

// Owns a file descriptor for the scope of one function.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// A failed bpf() call as a status: a full map is RESOURCE_EXHAUSTED (the
// caller can act on it: delete entries), anything else INTERNAL.
inline absl::Status BpfErrno(const std::string& what, int err) {
  std::string message = absl::StrCat(what, ": ", std::strerror(err));
  if (err == E2BIG || err == ENOMEM || err == ENOSPC) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::InternalError(message);
}

// Calls visit(key) for every key of the map, at most `limit` + 1 times (the
// map's capacity: entries churning underneath cannot make it loop forever).
template <typename Key, typename Visit>
absl::Status ForEachMapKey(int fd, uint32_t limit, const char* what, Visit visit) {
  Key key{};
  Key next{};
  const void* previous = nullptr;  // null asks for the first key
  for (uint32_t i = 0; i <= limit; ++i) {
    if (bpf_map_get_next_key(fd, previous, &next) != 0) {
      if (errno == ENOENT) return absl::OkStatus();
      return BpfErrno(absl::StrCat("iterating ", what), errno);
    }
    key = next;
    previous = &key;
    if (absl::Status status = visit(key); !status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace ebpfcni::datapath
