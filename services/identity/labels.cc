#include "services/identity/labels.h"

#include <algorithm>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

namespace ebpfcni::identity {

std::string Label::ToString() const { return absl::StrCat(source, ":", key, "=", value); }

LabelSet::LabelSet(std::vector<Label> labels) {
  // Stable sort by (source, key) keeps input order among duplicates, so
  // "last wins" is well defined.
  std::stable_sort(labels.begin(), labels.end(), [](const Label& a, const Label& b) {
    return std::tie(a.source, a.key) < std::tie(b.source, b.key);
  });
  for (auto& label : labels) {
    if (!labels_.empty() && labels_.back().source == label.source && labels_.back().key == label.key) {
      labels_.back() = std::move(label);
    } else {
      labels_.push_back(std::move(label));
    }
  }
}

std::string LabelSet::Key() const {
  std::string key;
  for (const auto& label : labels_) {
    if (!key.empty()) key += ';';
    key += label.ToString();
  }
  return key;
}

absl::StatusOr<LabelSet> LabelSet::ParseKey(const std::string& key) {
  std::vector<Label> labels;
  if (key.empty()) return LabelSet();
  for (absl::string_view part : absl::StrSplit(key, ';')) {
    auto colon = part.find(':');
    auto equals = part.find('=', colon == absl::string_view::npos ? 0 : colon);
    if (colon == absl::string_view::npos || equals == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("malformed label \"", part, "\" in identity key; want source:key=value"));
    }
    labels.push_back(Label{std::string(part.substr(0, colon)), std::string(part.substr(colon + 1, equals - colon - 1)),
                           std::string(part.substr(equals + 1))});
  }
  return LabelSet(std::move(labels));
}

namespace {

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// Kubernetes "qualified name" part: [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, at most 63.
bool IsQualifiedName(absl::string_view s) {
  if (s.empty() || s.size() > 63 || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

// DNS subdomain: lowercase alphanumerics, '-' and '.', at most 253.
bool IsDnsSubdomain(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'; });
}

}  // namespace

absl::Status ValidateLabel(const Label& label) {
  if (label.source.empty() || !std::all_of(label.source.begin(), label.source.end(), IsAlnum)) {
    return absl::InvalidArgumentError(absl::StrCat("label ", label.ToString(), ": source must be alphanumeric and non-empty"));
  }
  absl::string_view key = label.key;
  auto slash = key.rfind('/');
  absl::string_view name = slash == absl::string_view::npos ? key : key.substr(slash + 1);
  if (slash != absl::string_view::npos && !IsDnsSubdomain(key.substr(0, slash))) {
    return absl::InvalidArgumentError(absl::StrCat("label key \"", label.key, "\": prefix must be a DNS subdomain"));
  }
  // Namespace labels are stored under a long dotted prefix; check the
  // original key's name part, not the combined length.
  if (!IsQualifiedName(name) && !(label.key.rfind(kNamespaceLabelPrefix, 0) == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "label key \"", label.key, "\": name must be 1-63 characters [A-Za-z0-9_.-], starting and ending alphanumeric"));
  }
  if (!label.value.empty() && !IsQualifiedName(label.value)) {
    return absl::InvalidArgumentError(absl::StrCat("label value \"", label.value, "\" of \"", label.key,
                                                   "\": must be empty or 1-63 characters [A-Za-z0-9_.-]"));
  }
  return absl::OkStatus();
}

LabelSet PodLabelSet(const std::string& pod_namespace, const std::map<std::string, std::string>& pod_labels,
                     const std::map<std::string, std::string>& namespace_labels) {
  std::vector<Label> labels;
  for (const auto& [key, value] : pod_labels) labels.push_back({kK8sSource, key, value});
  for (const auto& [key, value] : namespace_labels) {
    labels.push_back({kK8sSource, absl::StrCat(kNamespaceLabelPrefix, key), value});
  }
  labels.push_back({kK8sSource, kPodNamespaceLabel, pod_namespace});
  return LabelSet(std::move(labels));
}

}  // namespace ebpfcni::identity
