#include "services/policy/clusterstate/cluster_state_source.h"

namespace ebpfcni::policy {

const char* ResourceKindName(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::kPod:
      return "Pod";
    case ResourceKind::kNamespace:
      return "Namespace";
    case ResourceKind::kNetworkPolicy:
      return "NetworkPolicy";
  }
  return "?";
}

}  // namespace ebpfcni::policy
