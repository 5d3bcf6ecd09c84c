#include "cni/net/sysctl.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>

#include "cni/net/unique_fd.h"

namespace ebpfcni::net {
namespace {

absl::StatusOr<std::string> PathOf(const std::string& key) {
  if (key.empty() || absl::StartsWith(key, "/") || absl::StrContains(key, "..")) {
    return absl::InvalidArgumentError(absl::StrCat("invalid sysctl key \"", key, "\""));
  }
  return absl::StrCat("/proc/sys/", key);
}

absl::Status ErrnoStatus(int err, const std::string& what) {
  std::string text = absl::StrCat(what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(text);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(text);
  if (err == EINVAL) return absl::InvalidArgumentError(text);
  return absl::InternalError(text);
}

}  // namespace

absl::StatusOr<std::string> ReadSysctl(const std::string& key) {
  absl::StatusOr<std::string> path = PathOf(key);
  if (!path.ok()) return path.status();
  UniqueFd fd(::open(path->c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("cannot open ", *path));
  std::string value;
  char buf[256];
  // sysctl files are small; the bound keeps a misbehaving file from looping.
  for (int i = 0; i < 64; ++i) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("cannot read ", *path));
    }
    if (n == 0) break;
    value.append(buf, static_cast<size_t>(n));
  }
  return std::string(absl::StripAsciiWhitespace(value));
}

absl::Status WriteSysctl(const std::string& key, const std::string& value) {
  absl::StatusOr<std::string> path = PathOf(key);
  if (!path.ok()) return path.status();
  UniqueFd fd(::open(path->c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("cannot open ", *path));
  std::string line = value + "\n";
  ssize_t n;
  do {
    n = ::write(fd.get(), line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("cannot write \"", value, "\" to ", *path));
  if (static_cast<size_t>(n) != line.size()) {
    return absl::InternalError(absl::StrCat("short write to ", *path));
  }
  return absl::OkStatus();
}

absl::Status EnsureSysctl(const std::string& key, const std::string& value) {
  absl::StatusOr<std::string> current = ReadSysctl(key);
  if (!current.ok()) return current.status();
  if (*current == value) return absl::OkStatus();
  return WriteSysctl(key, value);
}

}  // namespace ebpfcni::net
