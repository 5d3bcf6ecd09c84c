#pragma once
// ClusterStateSource over the Kubernetes API (HTTPS, libcurl): list then
// watch Pods (all namespaces), Namespaces and NetworkPolicies, following
// resourceVersions and bookmarks; a 410 Gone (expired resourceVersion)
// triggers a relist whose difference with what was known is delivered as one
// batch (objects deleted meanwhile become deletes). Errors back off with
// jitter and are visible in Status().errors until the next success.
#include <chrono>
#include <memory>
#include <string>

#include <absl/status/statusor.h>

#include "services/policy/clusterstate/cluster_state_source.h"

namespace ebpfcni::policy {

struct KubernetesApiConfig {
  std::string server;  // "https://10.96.0.1:443"
  std::string ca_file;
  std::string ca_data;  // PEM
  std::string token;
  // Re-read on every connection: projected service-account tokens rotate.
  std::string token_file;
  std::string client_cert_file, client_key_file;
  std::string client_cert_data, client_key_data;  // PEM (kubeconfig *-data fields)
  bool insecure_skip_tls_verify = false;

  // A kubeconfig file; `context` "" = its current-context. Relative file
  // paths in it are relative to the kubeconfig's directory (as kubectl does).
  static absl::StatusOr<KubernetesApiConfig> FromKubeconfig(const std::string& path, const std::string& context = "");
  // The pod's service account: KUBERNETES_SERVICE_HOST/PORT and
  // /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}.
  static absl::StatusOr<KubernetesApiConfig> InCluster();
  // Same with another service-account directory (tests).
  static absl::StatusOr<KubernetesApiConfig> InCluster(const std::string& service_account_dir);
};

// Timing knobs; the defaults suit production, tests shorten them.
struct KubernetesApiSourceOptions {
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  // Items per list page (limit/continue); 0 = unpaged.
  int list_page_size = 500;
  // Asked of the server per watch request (it ends the watch after that and
  // the source re-watches from the last resourceVersion).
  int watch_timeout_seconds = 300;
  std::chrono::milliseconds connect_timeout{10000};
};

absl::StatusOr<std::unique_ptr<ClusterStateSource>> NewKubernetesApiSource(KubernetesApiConfig config);
absl::StatusOr<std::unique_ptr<ClusterStateSource>> NewKubernetesApiSource(KubernetesApiConfig config,
                                                                           KubernetesApiSourceOptions options);

}  // namespace ebpfcni::policy
