#pragma once
// Files the datapath rewrites whole (the endpoint registry, stored
// policies): written so that readers, and a crash, see either the old or
// the new contents, never a torn file.
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace ebpfcni::datapath {

// Temp file, fsync, rename over `path`, fsync of the directory.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

// The whole file; NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace ebpfcni::datapath
