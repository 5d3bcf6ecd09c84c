#include "services/policy/clusterstate/yaml_to_json.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>

namespace ebpfcni::policy {
namespace {

constexpr char kTagPrefix[] = "tag:yaml.org,2002:";

bool IsNull(const std::string& s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }

// YAML 1.2 core schema integers: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+.
bool ParseInteger(const std::string& s, nlohmann::json* out) {
  if (s.empty()) return false;
  std::string digits = s;
  int base = 10;
  bool negative = false;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
    base = s[1] == 'o' ? 8 : 16;
    digits = s.substr(2);
  } else {
    if (digits[0] == '+' || digits[0] == '-') {
      negative = digits[0] == '-';
      digits = digits.substr(1);
    }
    if (digits.empty()) return false;
  }
  for (char c : digits) {
    bool ok = base == 8 ? (c >= '0' && c <= '7') : base == 10 ? absl::ascii_isdigit(c) : absl::ascii_isxdigit(c);
    if (!ok) return false;
  }
  errno = 0;
  unsigned long long magnitude = std::strtoull(digits.c_str(), nullptr, base);
  if (errno == ERANGE) {
    // Too big for 64 bits: JSON (and Go's decoder) would see a float.
    *out = std::strtod(s.c_str(), nullptr);
    return true;
  }
  if (negative) {
    if (magnitude > static_cast<unsigned long long>(std::numeric_limits<int64_t>::max()) + 1) {
      *out = -static_cast<double>(magnitude);
    } else {
      *out = static_cast<int64_t>(0 - magnitude);
    }
  } else if (magnitude <= static_cast<unsigned long long>(std::numeric_limits<int64_t>::max())) {
    *out = static_cast<int64_t>(magnitude);
  } else {
    *out = static_cast<uint64_t>(magnitude);
  }
  return true;
}

// YAML 1.2 core schema floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
// and .inf/.nan. JSON has no inf/nan: they become null, as Go's encoder
// would refuse them anyway.
bool ParseFloat(const std::string& s, nlohmann::json* out) {
  std::string lower = absl::AsciiStrToLower(s);
  if (lower == ".inf" || lower == "+.inf" || lower == "-.inf" || lower == ".nan") {
    *out = nullptr;
    return true;
  }
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  if (i != s.size()) return false;
  *out = std::strtod(s.c_str(), nullptr);
  return true;
}

bool ParseBool(const std::string& s, nlohmann::json* out) {
  if (s == "true" || s == "True" || s == "TRUE") {
    *out = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    *out = false;
    return true;
  }
  return false;
}

absl::StatusOr<nlohmann::json> ScalarToJson(const YAML::Node& node) {
  const std::string& value = node.Scalar();
  const std::string& tag = node.Tag();
  nlohmann::json out;
  // "!" = quoted or block scalar: always a string.
  if (tag == "!" || tag == absl::StrCat(kTagPrefix, "str")) return nlohmann::json(value);
  if (tag == absl::StrCat(kTagPrefix, "null")) return nlohmann::json(nullptr);
  if (tag == absl::StrCat(kTagPrefix, "bool")) {
    if (ParseBool(value, &out)) return out;
  } else if (tag == absl::StrCat(kTagPrefix, "int")) {
    if (ParseInteger(value, &out)) return out;
  } else if (tag == absl::StrCat(kTagPrefix, "float")) {
    if (ParseInteger(value, &out) || ParseFloat(value, &out)) return out;
  } else if (tag == "?" || tag.empty()) {
    if (IsNull(value)) return nlohmann::json(nullptr);
    if (ParseBool(value, &out) || ParseInteger(value, &out) || ParseFloat(value, &out)) return out;
    return nlohmann::json(value);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", node.Mark().line + 1, ": unsupported YAML tag ", tag));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("line ", node.Mark().line + 1, ": \"", value, "\" is not a valid ", tag.substr(sizeof(kTagPrefix) - 1)));
}

}  // namespace

absl::StatusOr<nlohmann::json> YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nlohmann::json(nullptr);
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    case YAML::NodeType::Sequence: {
      nlohmann::json array = nlohmann::json::array();
      for (const YAML::Node& item : node) {
        absl::StatusOr<nlohmann::json> value = YamlToJson(item);
        if (!value.ok()) return value.status();
        array.push_back(*std::move(value));
      }
      return array;
    }
    case YAML::NodeType::Map: {
      nlohmann::json object = nlohmann::json::object();
      std::vector<nlohmann::json> merged;  // `<<: *defaults` mappings, lowest priority
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", entry.first.Mark().line + 1, ": a mapping key must be a scalar"));
        }
        absl::StatusOr<nlohmann::json> value = YamlToJson(entry.second);
        if (!value.ok()) return value.status();
        if (entry.first.Scalar() == "<<" && entry.first.Tag() != "!") {
          // YAML merge key (Kubernetes' YAML parser honours it; yaml-cpp
          // leaves it to us): a mapping or a list of mappings whose keys
          // apply where this mapping has none.
          std::vector<nlohmann::json> sources =
              value->is_array() ? value->get<std::vector<nlohmann::json>>() : std::vector<nlohmann::json>{*value};
          for (nlohmann::json& source : sources) {
            if (!source.is_object()) {
              return absl::InvalidArgumentError(
                  absl::StrCat("line ", entry.first.Mark().line + 1, ": a merge key (<<) needs mappings"));
            }
            merged.push_back(std::move(source));
          }
          continue;
        }
        // JSON keys are strings whatever the YAML type (`80: x` -> "80").
        object[entry.first.Scalar()] = *std::move(value);
      }
      // Earlier merged mappings win over later ones, the mapping's own keys over all.
      for (const nlohmann::json& source : merged) {
        for (const auto& [key, value] : source.items()) {
          if (!object.contains(key)) object[key] = value;
        }
      }
      return object;
    }
  }
  return nlohmann::json(nullptr);
}

}  // namespace ebpfcni::policy
