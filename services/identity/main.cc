// ebpf-cni-identity: security identities for label sets.
//
// Foundation stage: the process runs like every other service (unix socket,
// reflection, grpc.health.v1) so deployments and health checks are in place;
// the IdentityService methods are the generated defaults, which answer
// UNIMPLEMENTED.
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <spdlog/spdlog.h>

#include "common/service/service_flags.h"
#include "ebpfcni/identity/v1/identity.grpc.pb.h"

ABSL_FLAG(std::string, state_dir, "/var/lib/ebpf-cni", "Directory for the embedded identity store");

namespace {
class IdentityService final : public ebpfcni::identity::v1::IdentityService::Service {};
}  // namespace

int main(int argc, char** argv) {
  ebpfcni::BlockTerminationSignals();
  absl::SetProgramUsageMessage("ebpf-cni identity service");
  absl::ParseCommandLine(argc, argv);
  ebpfcni::InitLogging("identity", ebpfcni::LogOptionsFromFlags());

  IdentityService identity;
  auto status = ebpfcni::ServeUntilSignal(ebpfcni::ListenOptionsFromFlags("/run/ebpf-cni/identity.sock"),
                                          {{&identity, "ebpfcni.identity.v1.IdentityService"}});
  if (!status.ok()) {
    spdlog::critical("identity service failed: {}", status.ToString());
    return 1;
  }
  return 0;
}
