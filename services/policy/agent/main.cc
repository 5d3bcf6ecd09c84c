// ebpf-cni-policy: the node's policy agent. Reads Pods, Namespaces and
// NetworkPolicies from one cluster-state source (a manifest directory, or
// the Kubernetes API through a kubeconfig or the in-cluster service
// account), follows identities (identity service) and this node's endpoints
// (datapath service), and keeps every endpoint's kernel policy equal to the
// compiled NetworkPolicy. Serves ebpfcni.policy.v1.PolicyService.
#include <unistd.h>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <spdlog/spdlog.h>

#include "common/grpc/channel.h"
#include "common/service/service_flags.h"
#include "services/policy/agent/policy_agent.h"
#include "services/policy/agent/policy_service.h"
#include "services/policy/clusterstate/kubernetes_api_source.h"
#include "services/policy/clusterstate/manifest_directory_source.h"

ABSL_FLAG(std::string, manifest_dir, "",
          "Cluster state from this directory of YAML/JSON manifests (Pods, Namespaces, NetworkPolicies), "
          "reloaded on change");
ABSL_FLAG(std::string, kubeconfig, "", "Cluster state from the Kubernetes API of this kubeconfig");
ABSL_FLAG(std::string, kubernetes_context, "", "Context of --kubeconfig (default: its current-context)");
ABSL_FLAG(bool, kubernetes_in_cluster, false,
          "Cluster state from the Kubernetes API through the pod's service account");
ABSL_FLAG(std::string, identity_service, "unix:/run/ebpf-cni/identity.sock",
          "Identity service target(s) (socket path, or comma-separated list for replicas)");
ABSL_FLAG(std::string, datapath_service, "unix:/run/ebpf-cni/datapath.sock", "This node's datapath service");
ABSL_FLAG(std::vector<std::string>, label_filter, {},
          "The identity service's --label_filter, when it has one (the compiler must filter Pod labels the same "
          "way to find their identities)");
ABSL_FLAG(std::string, node_name, "",
          "This node's name, owner of the identity references the agent takes (default: the host name, as the "
          "CNI binary uses)");

namespace {

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

absl::StatusOr<std::unique_ptr<ebpfcni::policy::ClusterStateSource>> OpenSource() {
  using namespace ebpfcni::policy;
  const std::string manifest_dir = absl::GetFlag(FLAGS_manifest_dir);
  const std::string kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  const bool in_cluster = absl::GetFlag(FLAGS_kubernetes_in_cluster);
  const int given = !manifest_dir.empty() + !kubeconfig.empty() + in_cluster;
  if (given != 1) {
    return absl::InvalidArgumentError(
        "give exactly one cluster-state source: --manifest_dir=DIR, --kubeconfig=FILE or --kubernetes_in_cluster");
  }
  if (!manifest_dir.empty()) return NewManifestDirectorySource(manifest_dir);
  auto config = in_cluster ? KubernetesApiConfig::InCluster()
                           : KubernetesApiConfig::FromKubeconfig(kubeconfig, absl::GetFlag(FLAGS_kubernetes_context));
  if (!config.ok()) return config.status();
  return NewKubernetesApiSource(std::move(*config));
}

}  // namespace

int main(int argc, char** argv) {
  ebpfcni::BlockTerminationSignals();
  absl::SetProgramUsageMessage(
      "ebpf-cni policy agent: NetworkPolicy from the cluster state to the kernel.\n"
      "  ebpf-cni-policy --manifest_dir=DIR | --kubeconfig=FILE | --kubernetes_in_cluster [flags]");
  absl::ParseCommandLine(argc, argv);
  ebpfcni::InitLogging("policy", ebpfcni::LogOptionsFromFlags());

  auto source = OpenSource();
  if (!source.ok()) {
    spdlog::critical("cluster-state source: {}", source.status().ToString());
    return 2;
  }
  ebpfcni::policy::PolicyAgentOptions options;
  if (auto patterns = absl::GetFlag(FLAGS_label_filter); !patterns.empty()) {
    auto filter = ebpfcni::identity::LabelFilter::FromPatterns(patterns);
    if (!filter.ok()) {
      spdlog::critical("--label_filter: {}", filter.status().ToString());
      return 2;
    }
    options.label_filter = std::move(*filter);
  }
  options.node_name = absl::GetFlag(FLAGS_node_name).empty() ? HostName() : absl::GetFlag(FLAGS_node_name);
  options.identity_channel = ebpfcni::MakeChannelForTargets(absl::GetFlag(FLAGS_identity_service));
  options.datapath_channel = ebpfcni::MakeChannel(absl::GetFlag(FLAGS_datapath_service));
  ebpfcni::policy::PolicyAgent agent(std::move(options), std::move(*source));
  if (auto status = agent.Start(); !status.ok()) {
    spdlog::critical("cannot start the cluster-state source: {}", status.ToString());
    return 1;
  }
  ebpfcni::policy::PolicyServiceImpl service(agent);
  auto status = ebpfcni::ServeUntilSignal(ebpfcni::ListenOptionsFromFlags("/run/ebpf-cni/policy.sock"),
                                          {{&service, "ebpfcni.policy.v1.PolicyService"}});
  agent.Stop();
  if (!status.ok()) {
    spdlog::critical("policy service failed: {}", status.ToString());
    return 1;
  }
  return 0;
}
