#pragma once
// The whole plugin as a function: environment + stdin in, stdout text and
// exit code out. main() is a thin wrapper; tests call this directly.
#include <functional>
#include <ostream>
#include <absl/strings/string_view.h>

#include "cni/plugin/environment.h"
#include "cni/plugin/network_config.h"
#include "cni/plugin/pod_network_ops.h"

namespace ebpfcni::cni {

struct PluginHooks {
  PodNetworkOps* network = nullptr;
  // Called once the config is known (main() points logging at logFile).
  std::function<void(const NetworkConfig&)> on_config;
  // Called with the exit code once the answer is on `out` (flushed), while
  // the service clients still exist. main() ends the process right there:
  // the runtime waits for the plugin to exit, and closing the gRPC
  // channels and joining gRPC's threads is work nobody needs.
  std::function<void(int exit_code)> on_answered;
};

// Writes the result (ADD), version info (VERSION) or the spec error JSON to
// out, followed by a newline. Returns the process exit code: 0 on success,
// 1 on any error.
int RunPlugin(const EnvLookup& env_lookup, absl::string_view stdin_text, std::ostream& out,
              const PluginHooks& hooks);

}  // namespace ebpfcni::cni
