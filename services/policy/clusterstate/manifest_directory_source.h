#pragma once
// ClusterStateSource over a directory of manifests (single node, development):
// multi-document YAML or JSON files (*.yaml, *.yml, *.json; hidden files
// ignored; not recursive) holding Pods, Namespaces and NetworkPolicies (also
// inside `kind: List`). Reloaded on change through inotify; one file reload is
// one batch (the difference with that file's previous objects). A file that
// does not parse is reported as "path:line: message" and keeps its last good
// objects; an object defined in two files stays with the file that had it
// first. Kubernetes ConfigMap volumes (the ..data symlink swap) are followed.
#include <chrono>
#include <memory>
#include <string>

#include <absl/status/statusor.h>

#include "services/policy/clusterstate/cluster_state_source.h"

namespace ebpfcni::policy {

struct ManifestDirectoryOptions {
  // Changes are applied once the directory has been quiet this long, so an
  // editor's write + rename or a `cp *.yaml` is one reload per file.
  std::chrono::milliseconds debounce{20};
};

// NOT_FOUND if the directory does not exist, INVALID_ARGUMENT if it is not a
// directory (it is not created: a typo must not silently mean "no policy").
absl::StatusOr<std::unique_ptr<ClusterStateSource>> NewManifestDirectorySource(const std::string& directory);
absl::StatusOr<std::unique_ptr<ClusterStateSource>> NewManifestDirectorySource(const std::string& directory,
                                                                               ManifestDirectoryOptions options);

}  // namespace ebpfcni::policy
