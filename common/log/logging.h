#pragma once
// One logging setup for every ebpf-cni process (spdlog).
// Human-readable text by default, one JSON object per line when json=true.
// The CNI binary must never log to stdout (libcni reads its result there),
// so it always passes a file; services default to stderr.
#include <string>

namespace ebpfcni {

struct LogOptions {
  // "trace", "debug", "info", "warn", "error".
  std::string level = "info";
  bool json = false;
  // Empty: stderr.
  std::string file;
};

// Installs the default spdlog logger named after the component.
void InitLogging(const std::string& component, const LogOptions& options);

}  // namespace ebpfcni
