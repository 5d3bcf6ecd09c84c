#include "services/datapath/bpf_filesystem.h"

#include <linux/magic.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <absl/strings/str_cat.h>

namespace ebpfcni::datapath {

absl::Status CheckOnBpffs(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("BPF directory must be an absolute path, got \"", path, "\""));
  }
  // Walk up to the first component that exists: the bpf dir itself may not
  // have been created yet, but it will live on its parent's filesystem.
  std::filesystem::path probe(path);
  std::error_code ec;
  while (!std::filesystem::exists(probe, ec) && probe.has_parent_path() &&
         probe != probe.parent_path()) {
    probe = probe.parent_path();
  }
  struct statfs fs {};
  if (statfs(probe.c_str(), &fs) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot stat filesystem of ", probe.string(), ": ", std::strerror(errno)));
  }
  if (static_cast<unsigned long>(fs.f_type) != BPF_FS_MAGIC) {
    return absl::FailedPreconditionError(absl::StrCat(
        probe.string(), " is not on a BPF filesystem, so maps and programs could not "
        "be pinned to survive restarts; mount one with "
        "`mount -t bpf bpf /sys/fs/bpf` (or point --bpf_dir at a bpffs mount)"));
  }
  return absl::OkStatus();
}

absl::Status PrepareBpfDir(const std::string& path) {
  if (absl::Status status = CheckOnBpffs(path); !status.ok()) return status;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create BPF directory ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace ebpfcni::datapath
