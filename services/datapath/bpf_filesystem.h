#pragma once
// Checks on the BPF filesystem (bpffs) that holds the datapath's pins.
#include <string>

#include <absl/status/status.h>

namespace ebpfcni::datapath {

// OK when `path`, or the nearest ancestor of it that exists, is on a bpffs
// mount. Pins only survive a restart of the service on bpffs, so running
// without one is refused with a message that says how to mount it.
absl::Status CheckOnBpffs(const std::string& path);

// Creates `path` (and parents) as a directory after checking it is on bpffs.
absl::Status PrepareBpfDir(const std::string& path);

}  // namespace ebpfcni::datapath
