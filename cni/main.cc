// ebpf-cni: the CNI plugin binary. Everything is in ebpfcni_cni_plugin;
// this wires in the real network layer, stdin/stdout and logging.
// stdout carries only the CNI result or error JSON; logs go to logFile.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>

#include <spdlog/spdlog.h>

#include "cni/plugin/errors.h"
#include "cni/plugin/network_config.h"
#include "cni/plugin/plugin.h"
#include "cni/plugin/pod_network_ops.h"
#include "cni/plugin/version.h"
#include "common/log/logging.h"

int main() {
  using namespace ebpfcni;
  // spdlog's default logger writes to stdout, which belongs to the runtime.
  // Until the config names the log file, log to stderr (runtimes keep a
  // plugin's stderr); errors at that stage are on stdout as JSON anyway.
  InitLogging("ebpf-cni", LogOptions{.level = "info", .json = false, .file = ""});

  std::string input(std::istreambuf_iterator<char>(std::cin), {});
  if (std::cin.bad()) {
    cni::CniError error{cni::code::kIoFailure, "failed to read the network config from stdin", ""};
    std::cout << cni::EncodeError(error, cni::kLatestCniVersion).dump() << std::endl;
    return 1;
  }

  std::unique_ptr<cni::PodNetworkOps> network = cni::MakeRealPodNetworkOps();
  cni::PluginHooks hooks;
  hooks.network = network.get();
  hooks.on_config = [](const cni::NetworkConfig& config) {
    InitLogging("ebpf-cni", LogOptions{.level = "info", .json = false, .file = config.log_file});
  };
  // The answer is out and flushed: leave without running destructors. The
  // runtime waits for this process, and tearing down gRPC (closing each
  // channel, joining its threads) cost several ms per ADD/DEL; the kernel
  // closes the sockets. Only the log file has buffered data to keep.
  hooks.on_answered = [](int exit_code) {
    std::cout.flush();
    spdlog::shutdown();
    std::_Exit(exit_code);
  };
  return cni::RunPlugin(cni::ProcessEnvLookup(), input, std::cout, hooks);
}
