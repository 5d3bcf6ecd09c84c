// ebpf-cni-ipam: hands out pod addresses from the configured pools over
// gRPC (ebpfcni.ipam.v1.IpamService) and keeps them in <state_dir>/ipam.db.
#include <cstdlib>
#include <filesystem>
#include <string>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <spdlog/spdlog.h>

#include "common/log/logging.h"
#include "common/service/server_runner.h"
#include "common/service/service_flags.h"
#include "services/ipam/allocation_store.h"
#include "services/ipam/ipam_service.h"
#include "services/ipam/pool.h"

ABSL_FLAG(std::string, pool_cidr, "10.244.0.0/24",
          "IPv4 pod address pool (CIDR); empty to serve no IPv4 addresses");
ABSL_FLAG(std::string, pool_cidr6, "", "IPv6 pod address pool (CIDR), optional; set both for dual stack");
ABSL_FLAG(std::string, state_dir, "/var/lib/ebpf-cni", "directory for the allocation database (ipam.db)");

namespace {
constexpr char kDefaultSocket[] = "/run/ebpf-cni/ipam.sock";
}

int main(int argc, char** argv) {
  ebpfcni::BlockTerminationSignals();
  absl::ParseCommandLine(argc, argv);
  ebpfcni::InitLogging("ipam", ebpfcni::LogOptionsFromFlags());

  auto pools = ebpfcni::ipam::ConfigurePools(absl::GetFlag(FLAGS_pool_cidr), absl::GetFlag(FLAGS_pool_cidr6));
  if (!pools.ok()) {
    spdlog::critical("invalid pool configuration: {}", std::string(pools.status().message()));
    return EXIT_FAILURE;
  }
  for (const auto& pool : *pools) {
    spdlog::info("pool {}: {} (gateway {}, {} usable addresses)", pool.name(), pool.cidr().ToString(),
                 pool.gateway().ToString(), pool.Capacity());
  }

  const std::string db_path = (std::filesystem::path(absl::GetFlag(FLAGS_state_dir)) / "ipam.db").string();
  auto store = ebpfcni::ipam::AllocationStore::Open(db_path, std::move(*pools));
  if (!store.ok()) {
    spdlog::critical("cannot open the IPAM database {}: {}", db_path, store.status().ToString());
    return EXIT_FAILURE;
  }

  ebpfcni::ipam::IpamServiceImpl service(**store);
  absl::Status served = ebpfcni::ServeUntilSignal(ebpfcni::ListenOptionsFromFlags(kDefaultSocket),
                                                  {{&service, ebpfcni::ipam::kIpamServiceName}});
  if (!served.ok()) {
    spdlog::critical("ipam service failed: {}", served.ToString());
    return EXIT_FAILURE;
  }
  spdlog::info("ipam service stopped");
  return EXIT_SUCCESS;
}
