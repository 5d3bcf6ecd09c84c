#pragma once
// Security-relevant labels and their canonical form.
//
// A pod's identity is derived from a label set: its own labels plus its
// namespace's labels and name, each with a source prefix ("k8s"). The
// canonical form is sorted by (source, key), de-duplicated, filtered by the
// LabelFilter, and serialised as "source:key=value;..." — that string is
// the identity's key in every store, so two replicas or nodes that see the
// same pod labels agree on the key byte for byte.
#include <map>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

namespace ebpfcni::identity {

// Source of Kubernetes-derived labels.
inline constexpr char kK8sSource[] = "k8s";
// Source of labels of reserved identities ("reserved:host").
inline constexpr char kReservedSource[] = "reserved";
// Label carrying the pod's namespace name.
inline constexpr char kPodNamespaceLabel[] = "io.kubernetes.pod.namespace";
// Prefix of labels copied from the pod's Namespace object.
inline constexpr char kNamespaceLabelPrefix[] = "io.kubernetes.pod.namespace.labels.";

struct Label {
  std::string source;
  std::string key;
  std::string value;

  auto operator<=>(const Label&) const = default;
  std::string ToString() const;  // "k8s:app=web"
};

// A canonical (sorted, unique by source+key) label set.
class LabelSet {
 public:
  LabelSet() = default;
  // Sorts; when a (source, key) appears twice the last value wins.
  explicit LabelSet(std::vector<Label> labels);

  const std::vector<Label>& labels() const { return labels_; }
  bool empty() const { return labels_.empty(); }
  // "k8s:app=web;k8s:io.kubernetes.pod.namespace=default".
  std::string Key() const;
  // Inverse of Key(); INVALID_ARGUMENT on malformed input.
  static absl::StatusOr<LabelSet> ParseKey(const std::string& key);

  bool operator==(const LabelSet&) const = default;

 private:
  std::vector<Label> labels_;
};

// Validates one label as Kubernetes would accept it (key: optional DNS
// prefix + "/" + name of at most 63 chars; value at most 63 chars) and that
// it contains none of the characters the canonical form uses as separators.
absl::Status ValidateLabel(const Label& label);

// The label set of a pod: its labels, its namespace's labels (under
// kNamespaceLabelPrefix) and kPodNamespaceLabel, all with source "k8s".
LabelSet PodLabelSet(const std::string& pod_namespace,
                     const std::map<std::string, std::string>& pod_labels,
                     const std::map<std::string, std::string>& namespace_labels);

}  // namespace ebpfcni::identity
