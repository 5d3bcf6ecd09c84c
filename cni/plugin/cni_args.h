#pragma once
// CNI_ARGS: "KEY=VALUE;KEY=VALUE" (containerd/CRI-O send IgnoreUnknown=1 and
// the K8S_POD_* keys). Keys are matched case-insensitively. As with the
// reference plugins, a key we do not understand is an error unless
// IgnoreUnknown is true, so typos do not pass silently.
#include <string>
#include <absl/strings/string_view.h>

#include <absl/status/statusor.h>

namespace ebpfcni::cni {

struct CniArgs {
  bool ignore_unknown = false;
  std::string pod_namespace;       // K8S_POD_NAMESPACE
  std::string pod_name;            // K8S_POD_NAME
  std::string pod_infra_container_id;  // K8S_POD_INFRA_CONTAINER_ID
  std::string pod_uid;             // K8S_POD_UID
};

// Errors (CNI code 4): a pair without '=', an empty key, a duplicate key, an
// unknown key without IgnoreUnknown, an IgnoreUnknown value that is not a
// boolean.
absl::StatusOr<CniArgs> ParseCniArgs(absl::string_view text);

}  // namespace ebpfcni::cni
