#include "services/policy/k8s/label_selector.h"

#include <algorithm>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "services/identity/labels.h"
#include "services/policy/k8s/json_fields.h"

namespace ebpfcni::policy::k8s {

std::string_view SelectorOperatorName(SelectorOperator op) {
  switch (op) {
    case SelectorOperator::kIn: return "In";
    case SelectorOperator::kNotIn: return "NotIn";
    case SelectorOperator::kExists: return "Exists";
    case SelectorOperator::kDoesNotExist: return "DoesNotExist";
  }
  return "?";
}

bool LabelSelectorRequirement::Matches(const Labels& labels) const {
  auto it = labels.find(key);
  bool has = it != labels.end();
  switch (op) {
    case SelectorOperator::kIn:
      return has && std::binary_search(values.begin(), values.end(), it->second);
    case SelectorOperator::kNotIn:
      return !has || !std::binary_search(values.begin(), values.end(), it->second);
    case SelectorOperator::kExists: return has;
    case SelectorOperator::kDoesNotExist: return !has;
  }
  return false;
}

namespace {

std::optional<SelectorOperator> OperatorFromName(std::string_view name) {
  for (auto op : {SelectorOperator::kIn, SelectorOperator::kNotIn, SelectorOperator::kExists,
                  SelectorOperator::kDoesNotExist}) {
    if (SelectorOperatorName(op) == name) return op;
  }
  return std::nullopt;
}

absl::Status ValidateKey(const std::string& key, std::string_view path) {
  if (key.empty()) return FieldError(path, "label key must not be empty");
  absl::Status valid = identity::ValidateLabel({identity::kK8sSource, key, ""});
  if (!valid.ok()) return FieldError(path, std::string(valid.message()));
  return absl::OkStatus();
}

absl::StatusOr<LabelSelectorRequirement> ParseRequirement(const nlohmann::json& json, std::string_view path) {
  if (!json.is_object()) {
    return FieldError(path, absl::StrCat("expected an object, got ", std::string(JsonTypeName(json))));
  }
  LabelSelectorRequirement requirement;
  std::string key_path = JoinPath(path, "key");
  auto key = StringMember(json, "key", key_path);
  if (!key.ok()) return key.status();
  if (!key->has_value()) return FieldError(key_path, "required");
  requirement.key = **key;
  if (absl::Status s = ValidateKey(requirement.key, key_path); !s.ok()) return s;

  std::string op_path = JoinPath(path, "operator");
  auto op_name = StringMember(json, "operator", op_path);
  if (!op_name.ok()) return op_name.status();
  if (!op_name->has_value()) return FieldError(op_path, "required");
  auto op = OperatorFromName(**op_name);
  if (!op.has_value()) {
    return FieldError(op_path, absl::StrCat("unknown operator \"", **op_name,
                                            "\" (supported: In, NotIn, Exists, DoesNotExist)"));
  }
  requirement.op = *op;

  std::string values_path = JoinPath(path, "values");
  auto values = ArrayMember(json, "values", values_path);
  if (!values.ok()) return values.status();
  if (*values != nullptr) {
    for (size_t i = 0; i < (*values)->size(); ++i) {
      const nlohmann::json& value = (**values)[i];
      std::string value_path = IndexPath(values_path, i);
      if (!value.is_string()) {
        return FieldError(value_path, absl::StrCat("expected a string, got ", std::string(JsonTypeName(value))));
      }
      absl::Status valid = identity::ValidateLabel({identity::kK8sSource, "k", value.get<std::string>()});
      if (!valid.ok()) return FieldError(value_path, std::string(valid.message()));
      requirement.values.push_back(value.get<std::string>());
    }
  }
  // The API server's rules (ValidateLabelSelectorRequirement).
  bool needs_values = requirement.op == SelectorOperator::kIn || requirement.op == SelectorOperator::kNotIn;
  if (needs_values && requirement.values.empty()) {
    return FieldError(values_path, "must be specified when `operator` is 'In' or 'NotIn'");
  }
  if (!needs_values && !requirement.values.empty()) {
    return FieldError(values_path, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'");
  }
  std::sort(requirement.values.begin(), requirement.values.end());
  requirement.values.erase(std::unique(requirement.values.begin(), requirement.values.end()),
                           requirement.values.end());
  return requirement;
}

}  // namespace

absl::StatusOr<LabelSelector> LabelSelector::FromJson(const nlohmann::json& json, std::string_view path) {
  LabelSelector selector;
  if (json.is_null()) return selector;
  if (!json.is_object()) {
    return FieldError(path, absl::StrCat("expected an object, got ", std::string(JsonTypeName(json))));
  }
  auto labels = LabelMap(Member(json, "matchLabels"), JoinPath(path, "matchLabels"));
  if (!labels.ok()) return labels.status();
  selector.match_labels_ = *std::move(labels);

  std::string expressions_path = JoinPath(path, "matchExpressions");
  auto expressions = ArrayMember(json, "matchExpressions", expressions_path);
  if (!expressions.ok()) return expressions.status();
  if (*expressions != nullptr) {
    for (size_t i = 0; i < (*expressions)->size(); ++i) {
      auto requirement = ParseRequirement((**expressions)[i], IndexPath(expressions_path, i));
      if (!requirement.ok()) return requirement.status();
      selector.AddRequirement(*std::move(requirement));
    }
  }
  return selector;
}

LabelSelector LabelSelector::FromMatchLabels(Labels match_labels) {
  LabelSelector selector;
  selector.match_labels_ = std::move(match_labels);
  return selector;
}

LabelSelector& LabelSelector::AddRequirement(LabelSelectorRequirement requirement) {
  std::sort(requirement.values.begin(), requirement.values.end());
  requirement.values.erase(std::unique(requirement.values.begin(), requirement.values.end()),
                           requirement.values.end());
  auto order = [](const LabelSelectorRequirement& a, const LabelSelectorRequirement& b) {
    return std::tie(a.key, a.op, a.values) < std::tie(b.key, b.op, b.values);
  };
  auto position = std::lower_bound(match_expressions_.begin(), match_expressions_.end(), requirement, order);
  // The same requirement twice means the same as once.
  if (position == match_expressions_.end() || !(*position == requirement)) {
    match_expressions_.insert(position, std::move(requirement));
  }
  return *this;
}

bool LabelSelector::Matches(const Labels& labels) const {
  for (const auto& [key, value] : match_labels_) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  for (const auto& requirement : match_expressions_) {
    if (!requirement.Matches(labels)) return false;
  }
  return true;
}

std::string LabelSelector::ToString() const {
  std::vector<std::string> parts;
  for (const auto& [key, value] : match_labels_) parts.push_back(absl::StrCat(key, "=", value));
  for (const auto& requirement : match_expressions_) {
    switch (requirement.op) {
      case SelectorOperator::kIn:
        parts.push_back(absl::StrCat(requirement.key, " in (", absl::StrJoin(requirement.values, ","), ")"));
        break;
      case SelectorOperator::kNotIn:
        parts.push_back(absl::StrCat(requirement.key, " notin (", absl::StrJoin(requirement.values, ","), ")"));
        break;
      case SelectorOperator::kExists: parts.push_back(requirement.key); break;
      case SelectorOperator::kDoesNotExist: parts.push_back(absl::StrCat("!", requirement.key)); break;
    }
  }
  return absl::StrJoin(parts, ",");
}

}  // namespace ebpfcni::policy::k8s
