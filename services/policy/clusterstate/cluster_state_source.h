#pragma once
// Where the policy agent's view of the cluster comes from: Pods, Namespaces
// and NetworkPolicies as raw Kubernetes objects (nlohmann::json, exactly as
// the API server returns them). Two implementations produce the same events:
// the Kubernetes API (kubernetes_api_source.h) and a directory of YAML
// manifests (manifest_directory_source.h). Interpreting the objects is the
// job of services/policy/k8s/, not of a source.
#include <cstdint>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <nlohmann/json.hpp>

namespace ebpfcni::policy {

enum class ResourceKind { kPod, kNamespace, kNetworkPolicy };

// "Pod", "Namespace", "NetworkPolicy": the Kubernetes kind names.
const char* ResourceKindName(ResourceKind kind);

struct ResourceEvent {
  enum class Type { kUpsert, kDelete };
  Type type = Type::kUpsert;
  ResourceKind kind = ResourceKind::kPod;
  std::string namespace_name;  // "" for Namespace objects
  std::string name;
  // The whole Kubernetes object (apiVersion, kind, metadata, spec, status) on
  // upsert; on delete the last state the source knew (may be null).
  nlohmann::json object;
  std::string origin;  // where it came from: "/dir/a.yaml:12" or "kubernetes"
};

class ClusterStateListener {
 public:
  virtual ~ClusterStateListener() = default;
  // Called from the source's thread, in order. One batch = one consistent
  // step: a whole manifest file reload, a whole (re)list, or one watch event.
  // The listener applies a batch atomically. Never called with an empty batch.
  virtual void OnBatch(const std::vector<ResourceEvent>& events) = 0;
  // The first complete list/scan has been delivered (called once).
  virtual void OnSynced() = 0;
};

struct ClusterStateStatus {
  std::string description;          // "manifests /etc/ebpf-cni/manifests" / "kubernetes https://…"
  bool synced = false;
  std::vector<std::string> errors;  // current problems, each "path:line: message" or "kubernetes: …"
  std::vector<std::string> warnings;  // things ignored on purpose (e.g. a manifest of an unrelated kind)
  uint32_t pods = 0, namespaces = 0, network_policies = 0;
};

class ClusterStateSource {
 public:
  virtual ~ClusterStateSource() = default;
  // Starts its thread; returns without waiting for sync. Call at most once.
  virtual absl::Status Start(ClusterStateListener* listener) = 0;
  // Stops and joins; idempotent. No listener call happens after it returns.
  virtual void Stop() = 0;
  virtual ClusterStateStatus Status() const = 0;  // thread-safe
};

}  // namespace ebpfcni::policy
