#pragma once
// Reading typed fields out of a Kubernetes object's JSON with errors that
// name the field path ("spec.ingress[0].ports[1].port: expected an integer
// or a string, got an array"), as the API server reports them. Internal to
// the k8s object parsers.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

namespace ebpfcni::policy::k8s {

// INVALID_ARGUMENT "<path>: <message>".
absl::Status FieldError(std::string_view path, std::string_view message);

// "spec" + "ingress" -> "spec.ingress"; "" + "spec" -> "spec".
std::string JoinPath(std::string_view parent, std::string_view field);
// "spec.ingress" + 2 -> "spec.ingress[2]".
std::string IndexPath(std::string_view parent, size_t index);

// "a string", "an object", ... for error messages.
std::string_view JsonTypeName(const nlohmann::json& value);

// The member `key` of `object`; nullptr when missing or null (Kubernetes
// treats an explicit null as "not set").
const nlohmann::json* Member(const nlohmann::json& object, std::string_view key);

// The member as an object / array / string; missing or null -> nullopt
// (or nullptr); present with another type -> INVALID_ARGUMENT.
absl::StatusOr<const nlohmann::json*> ObjectMember(const nlohmann::json& object, std::string_view key,
                                                   std::string_view path);
absl::StatusOr<const nlohmann::json*> ArrayMember(const nlohmann::json& object, std::string_view key,
                                                  std::string_view path);
absl::StatusOr<std::optional<std::string>> StringMember(const nlohmann::json& object, std::string_view key,
                                                        std::string_view path);
// An integer member (JSON number without fraction); missing -> nullopt.
absl::StatusOr<std::optional<int64_t>> IntegerMember(const nlohmann::json& object, std::string_view key,
                                                     std::string_view path);

// metadata.labels (or any string map): every value a string, every label
// valid as Kubernetes requires.
absl::StatusOr<std::map<std::string, std::string>> LabelMap(const nlohmann::json* value, std::string_view path);

}  // namespace ebpfcni::policy::k8s
