#include "services/policy/compiler/peer_selector.h"

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "services/identity/reserved_identities.h"

namespace ebpfcni::policy {

IdentityLabels IdentityLabels::FromLabelSet(const identity::LabelSet& labels) {
  IdentityLabels result;
  constexpr std::string_view kPrefix = identity::kNamespaceLabelPrefix;
  for (const identity::Label& label : labels.labels()) {
    if (label.source != identity::kK8sSource) continue;
    if (label.key == identity::kPodNamespaceLabel) {
      result.is_pod = true;
      result.namespace_name = label.value;
    } else if (label.key.rfind(kPrefix, 0) == 0) {
      result.namespace_labels[label.key.substr(kPrefix.size())] = label.value;
    } else {
      result.pod_labels[label.key] = label.value;
    }
  }
  // Every Namespace carries its name label; an identity resolved without the
  // Namespace object still matches a namespaceSelector on it.
  if (result.is_pod) result.namespace_labels.emplace(k8s::kNamespaceNameLabel, result.namespace_name);
  return result;
}

IdentityLabels IdentityLabels::ForPod(const std::string& pod_namespace, const k8s::Labels& pod_labels,
                                      const k8s::Labels& namespace_labels) {
  IdentityLabels result;
  result.is_pod = true;
  result.namespace_name = pod_namespace;
  result.pod_labels = pod_labels;
  result.namespace_labels = namespace_labels;
  result.namespace_labels.emplace(k8s::kNamespaceNameLabel, pod_namespace);
  return result;
}

PeerSelector PeerSelector::FromPeer(const k8s::NetworkPolicyPeer& peer, const std::string& policy_namespace) {
  PeerSelector selector;
  if (peer.ip_block.has_value()) {
    selector.kind = Kind::kIpBlock;
    selector.ip_block = *peer.ip_block;
    return selector;
  }
  if (peer.namespace_selector.has_value()) {
    selector.namespace_selector = *peer.namespace_selector;
  } else {
    selector.namespace_name = policy_namespace;
  }
  if (peer.pod_selector.has_value()) selector.pod_selector = *peer.pod_selector;
  return selector;
}

PeerSelector PeerSelector::Subjects(const std::string& policy_namespace, const k8s::LabelSelector& pod_selector) {
  PeerSelector selector;
  selector.namespace_name = policy_namespace;
  selector.pod_selector = pod_selector;
  return selector;
}

std::string PeerSelector::Key() const {
  if (kind == Kind::kIpBlock) {
    std::vector<std::string> except;
    for (const IpPrefix& prefix : ip_block.except) except.push_back(prefix.ToString());
    return absl::StrCat("cidr:", ip_block.cidr.ToString(), except.empty() ? "" : " except ",
                        absl::StrJoin(except, ","));
  }
  std::string key = "pods:";
  if (namespace_name.has_value()) absl::StrAppend(&key, "ns=", *namespace_name);
  if (namespace_selector.has_value()) absl::StrAppend(&key, "nssel={", namespace_selector->ToString(), "}");
  absl::StrAppend(&key, " sel={", pod_selector.ToString(), "}");
  return key;
}

bool PeerSelector::MatchesIdentity(const IdentityLabels& labels) const {
  if (kind != Kind::kPods || !labels.is_pod) return false;
  if (namespace_name.has_value() && labels.namespace_name != *namespace_name) return false;
  if (namespace_selector.has_value() && !namespace_selector->Matches(labels.namespace_labels)) return false;
  return pod_selector.Matches(labels.pod_labels);
}

namespace {

bool Within(const IpPrefix& inner, const IpPrefix& outer) {
  return inner.family() == outer.family() && inner.length() >= outer.length() && outer.Contains(inner.address());
}

}  // namespace

bool PeerSelector::MatchesPrefix(const IpPrefix& prefix) const {
  if (kind != Kind::kIpBlock || !Within(prefix, ip_block.cidr)) return false;
  for (const IpPrefix& except : ip_block.except) {
    if (Within(prefix, except)) return false;
  }
  return true;
}

uint32_t PeerSelector::WorldIdentity() const {
  if (kind != Kind::kIpBlock || ip_block.cidr.length() != 0) return 0;
  return static_cast<uint32_t>(identity::WorldOf(ip_block.cidr.address().is_v4()));
}

}  // namespace ebpfcni::policy
