#include "services/policy/k8s/json_fields.h"

#include <cmath>
#include <map>

#include <absl/strings/str_cat.h>

#include "services/identity/labels.h"

namespace ebpfcni::policy::k8s {

absl::Status FieldError(std::string_view path, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(absl::string_view(path.data(), path.size()), ": ",
                                                 absl::string_view(message.data(), message.size())));
}

std::string JoinPath(std::string_view parent, std::string_view field) {
  if (parent.empty()) return std::string(field);
  std::string path(parent);
  path += '.';
  path += field;
  return path;
}

std::string IndexPath(std::string_view parent, size_t index) {
  std::string path(parent);
  path += '[';
  path += std::to_string(index);
  path += ']';
  return path;
}

std::string_view JsonTypeName(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "an integer";
    case nlohmann::json::value_t::number_float: return "a number";
    default: return "binary data";
  }
}

namespace {

absl::Status WrongType(const nlohmann::json& value, std::string_view path, std::string_view expected) {
  return FieldError(path, absl::StrCat("expected ", absl::string_view(expected.data(), expected.size()), ", got ",
                                       absl::string_view(JsonTypeName(value).data(), JsonTypeName(value).size())));
}

}  // namespace

const nlohmann::json* Member(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(std::string(key));
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<const nlohmann::json*> ObjectMember(const nlohmann::json& object, std::string_view key,
                                                   std::string_view path) {
  const nlohmann::json* value = Member(object, key);
  if (value != nullptr && !value->is_object()) return WrongType(*value, path, "an object");
  return value;
}

absl::StatusOr<const nlohmann::json*> ArrayMember(const nlohmann::json& object, std::string_view key,
                                                  std::string_view path) {
  const nlohmann::json* value = Member(object, key);
  if (value != nullptr && !value->is_array()) return WrongType(*value, path, "an array");
  return value;
}

absl::StatusOr<std::optional<std::string>> StringMember(const nlohmann::json& object, std::string_view key,
                                                        std::string_view path) {
  const nlohmann::json* value = Member(object, key);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) return WrongType(*value, path, "a string");
  return std::optional<std::string>(value->get<std::string>());
}

absl::StatusOr<std::optional<int64_t>> IntegerMember(const nlohmann::json& object, std::string_view key,
                                                     std::string_view path) {
  const nlohmann::json* value = Member(object, key);
  if (value == nullptr) return std::optional<int64_t>();
  if (value->is_number_integer()) return std::optional<int64_t>(value->get<int64_t>());
  if (value->is_number_unsigned()) {
    uint64_t v = value->get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) return FieldError(path, "integer out of range");
    return std::optional<int64_t>(static_cast<int64_t>(v));
  }
  // YAML manifests may turn "80" into 80.0 through a float; accept whole numbers.
  if (value->is_number_float()) {
    double v = value->get<double>();
    if (std::trunc(v) == v && std::fabs(v) < 9e15) return std::optional<int64_t>(static_cast<int64_t>(v));
  }
  return WrongType(*value, path, "an integer");
}

absl::StatusOr<std::map<std::string, std::string>> LabelMap(const nlohmann::json* value, std::string_view path) {
  std::map<std::string, std::string> labels;
  if (value == nullptr) return labels;
  if (!value->is_object()) return WrongType(*value, path, "an object");
  for (const auto& [key, item] : value->items()) {
    std::string item_path = absl::StrCat(absl::string_view(path.data(), path.size()), "[", key, "]");
    if (!item.is_string()) return WrongType(item, item_path, "a string");
    identity::Label label{identity::kK8sSource, key, item.get<std::string>()};
    if (absl::Status valid = identity::ValidateLabel(label); !valid.ok()) {
      return FieldError(item_path, std::string(valid.message()));
    }
    labels.emplace(key, item.get<std::string>());
  }
  return labels;
}

}  // namespace ebpfcni::policy::k8s
