#pragma once
// Kubernetes label selectors (metav1.LabelSelector): matchLabels and
// matchExpressions with In, NotIn, Exists and DoesNotExist, parsed and
// validated the way the API server validates them, and matched against a
// label map.
//
// Semantics (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors):
// all requirements are ANDed; an empty selector ({}) matches everything;
// NotIn and DoesNotExist match objects that do not have the key at all.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

namespace ebpfcni::policy::k8s {

using Labels = std::map<std::string, std::string>;

enum class SelectorOperator { kIn, kNotIn, kExists, kDoesNotExist };

std::string_view SelectorOperatorName(SelectorOperator op);  // "In", "NotIn", ...

struct LabelSelectorRequirement {
  std::string key;
  SelectorOperator op = SelectorOperator::kExists;
  // Sorted and unique (order does not change the meaning; a canonical order
  // lets equal selectors share one selector-cache entry).
  std::vector<std::string> values;

  bool Matches(const Labels& labels) const;
  bool operator==(const LabelSelectorRequirement&) const = default;
};

class LabelSelector {
 public:
  LabelSelector() = default;  // empty: matches everything

  // Parses a LabelSelector object. `path` names the field in error messages
  // ("spec.podSelector"); errors are INVALID_ARGUMENT, e.g.
  // "spec.podSelector.matchExpressions[0].operator: unknown operator \"Contains\"".
  static absl::StatusOr<LabelSelector> FromJson(const nlohmann::json& json, std::string_view path);

  // matchLabels only.
  static LabelSelector FromMatchLabels(Labels match_labels);

  LabelSelector& AddRequirement(LabelSelectorRequirement requirement);

  bool Matches(const Labels& labels) const;
  bool empty() const { return match_labels_.empty() && match_expressions_.empty(); }

  const Labels& match_labels() const { return match_labels_; }
  const std::vector<LabelSelectorRequirement>& match_expressions() const { return match_expressions_; }

  // Canonical text, equal for selectors with the same meaning written in a
  // different order: "app=web,tier in (a,b),!legacy". "" for the empty
  // selector (matches everything).
  std::string ToString() const;

  bool operator==(const LabelSelector&) const = default;

 private:
  Labels match_labels_;
  std::vector<LabelSelectorRequirement> match_expressions_;  // sorted
};

}  // namespace ebpfcni::policy::k8s
