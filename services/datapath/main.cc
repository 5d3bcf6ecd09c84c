// ebpf-cni-datapath: the only process that loads BPF programs, attaches TC
// filters and writes BPF maps. Serves ebpfcni.datapath.v1.DatapathService.
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/time/time.h>
#include <spdlog/spdlog.h>

#include "common/log/logging.h"
#include "common/service/server_runner.h"
#include "common/service/service_flags.h"
#include "ebpfcni/datapath_abi.h"
#include "services/datapath/datapath_service.h"
#include "services/datapath/endpoint_manager.h"
#include "services/datapath/event_stream.h"
#include "services/datapath/identity_liveness.h"

ABSL_FLAG(std::string, bpf_dir, "/sys/fs/bpf/ebpf-cni",
          "Directory on bpffs where maps and programs are pinned");
ABSL_FLAG(std::string, tc_attach, "auto",
          "How programs go on the host veths of endpoints whose CreateEndpoint does not ask for a "
          "mode: clsact (a clsact qdisc filter: cheapest to attach) or tcx (bpf_links, Linux >= "
          "6.6: chained plugins' tc qdiscs, such as the bandwidth plugin's egress shaping, "
          "coexist; each attach and detach waits for an RCU grace period). auto = clsact. The CNI "
          "asks for tcx for pods with egress bandwidth limits. Changing it across a restart moves "
          "every endpoint that did not ask");
ABSL_FLAG(std::string, state_dir, "/var/lib/ebpf-cni",
          "Directory for persistent state (the endpoint registry)");
ABSL_FLAG(uint32_t, default_identity, 0,
          "Security identity for endpoints created without one. 0 (the default): such "
          "endpoints are 'init' and all their traffic is dropped until SetEndpointIdentity; "
          "a non-zero value is a transition aid for CNI clients that do not send identities yet");

ABSL_FLAG(uint32_t, policy_counter_slots, EBPFCNI_POLICY_COUNTER_SLOTS_DEFAULT,
          "Policy rule entries on this node that get packet/byte counters (all entries of all "
          "endpoints' policies together; each slot costs 16 bytes per possible CPU). Entries "
          "beyond it are enforced but not counted, with a warning. Changing it restarts the "
          "counts from zero");

ABSL_FLAG(uint32_t, watch_queue_capacity,
          ebpfcni::datapath::DatapathServiceImpl::kDefaultWatchQueueCapacity,
          "Endpoint changes that may wait for one WatchEndpoints client; a client further behind "
          "has its stream ended with RESOURCE_EXHAUSTED and watches again from a snapshot");

ABSL_FLAG(std::string, identity_service, "/run/ebpf-cni/identity.sock",
          "Identity service target(s) (socket path, or comma-separated list for replicas) this node "
          "heartbeats to, keeping its pods' identity references alive; empty: no heartbeats");
ABSL_FLAG(std::string, node_name, "", "This node's name in the identity service (default: the host name, "
          "as the CNI binary uses)");
ABSL_FLAG(absl::Duration, node_ttl, absl::Seconds(15),
          "How long the identity service keeps this node's references after its last heartbeat");

namespace {
std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}
}  // namespace

int main(int argc, char** argv) {
  ebpfcni::BlockTerminationSignals();
  absl::ParseCommandLine(argc, argv);
  ebpfcni::InitLogging("ebpf-cni-datapath", ebpfcni::LogOptionsFromFlags());

  ebpfcni::datapath::EndpointManagerOptions options;
  options.bpf_dir = absl::GetFlag(FLAGS_bpf_dir);
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  options.default_identity = absl::GetFlag(FLAGS_default_identity);
  options.policy_counter_slots = absl::GetFlag(FLAGS_policy_counter_slots);
  absl::StatusOr<ebpfcni::datapath::TcAttachMode> attach_mode =
      ebpfcni::datapath::ParseTcAttachMode(absl::GetFlag(FLAGS_tc_attach));
  if (!attach_mode.ok()) {
    spdlog::critical("--tc_attach: {}", attach_mode.status().ToString());
    return EXIT_FAILURE;
  }
  options.tc_attach_mode = *attach_mode;
  auto manager = ebpfcni::datapath::EndpointManager::Start(options);
  if (!manager.ok()) {
    spdlog::critical("cannot start the datapath: {}", manager.status().ToString());
    return EXIT_FAILURE;
  }
  const auto& restored = (*manager)->restore_summary();
  spdlog::info("datapath ready: {} endpoint(s) re-adopted, {} stale removed, {} failed",
               restored.readopted.size(), restored.removed_stale.size(),
               restored.failed.size());

  auto events = ebpfcni::datapath::EventStream::Start((*manager)->bpf().events_fd());
  if (!events.ok()) {
    spdlog::critical("cannot read datapath events: {}", events.status().ToString());
    return EXIT_FAILURE;
  }
  ebpfcni::datapath::DatapathServiceImpl service(manager->get(), events->get(),
                                                 absl::GetFlag(FLAGS_watch_queue_capacity));
  std::unique_ptr<ebpfcni::datapath::IdentityLiveness> liveness;
  if (std::string target = absl::GetFlag(FLAGS_identity_service); !target.empty()) {
    std::string node = absl::GetFlag(FLAGS_node_name);
    liveness = std::make_unique<ebpfcni::datapath::IdentityLiveness>(
        **manager, ebpfcni::datapath::IdentityLiveness::Options{
                       .identity_service = target,
                       .node = node.empty() ? HostName() : node,
                       .ttl = absl::GetFlag(FLAGS_node_ttl)});
  }
  absl::Status served = ebpfcni::ServeUntilSignal(
      ebpfcni::ListenOptionsFromFlags("/run/ebpf-cni/datapath.sock"),
      {{&service, "ebpfcni.datapath.v1.DatapathService"}});
  if (!served.ok()) {
    spdlog::critical("datapath service failed: {}", served.ToString());
    return EXIT_FAILURE;
  }
  // Filters and pinned maps stay: pods keep their datapath while we are down.
  spdlog::info("datapath stopped; TC filters and pinned maps are left in place");
  return EXIT_SUCCESS;
}
