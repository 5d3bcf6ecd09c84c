#pragma once
// One manifest file's text -> the Pods, Namespaces and NetworkPolicies in it,
// as the Kubernetes API would return them. Pure (no file system), so the
// directory source and the tests share it.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "services/policy/clusterstate/cluster_state_source.h"

namespace ebpfcni::policy {

struct ManifestObject {
  ResourceKind kind;
  std::string namespace_name;  // "" for Namespace; "default" when a namespaced object names none (as kubectl)
  std::string name;
  nlohmann::json object;
  int line = 0;  // 1-based line where the object starts
};

struct ManifestParseResult {
  // Set when the file is unusable as a whole (syntax error, an object without
  // kind or metadata.name, ...): "line: message" parts are in `error_line`
  // and `error`; `objects` is then empty.
  bool ok = true;
  int error_line = 0;
  std::string error;
  std::vector<ManifestObject> objects;
  // Objects ignored on purpose, e.g. "12: kind Service is not used by the policy agent".
  std::vector<std::pair<int, std::string>> warnings;
};

// `json` = parse as JSON (a .json file): one object (or List) per file, or
// several concatenated. Otherwise multi-document YAML.
ManifestParseResult ParseManifest(const std::string& text, bool json);

}  // namespace ebpfcni::policy
