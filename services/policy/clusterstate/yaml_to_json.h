#pragma once
// YAML (yaml-cpp nodes) -> JSON as the Kubernetes API would hold it: plain
// scalars are typed by the YAML 1.2 core schema (80 is a number, true a
// boolean, null/~/empty a null) while quoted or block scalars stay strings
// ("80" is the string "80"), which is what makes `port: 80` and
// `port: "http"` mean different things in a NetworkPolicy.
#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

namespace ebpfcni::policy {

// INVALID_ARGUMENT (with the 1-based line) for what JSON cannot hold, e.g. a
// mapping used as a key.
absl::StatusOr<nlohmann::json> YamlToJson(const YAML::Node& node);

}  // namespace ebpfcni::policy
