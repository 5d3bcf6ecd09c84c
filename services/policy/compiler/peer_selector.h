#pragma once
// What NetworkPolicy selectors are matched against, and the peers of a rule
// as selector-cache keys.
//
// Selectors match identities, not pods: an identity's label set carries the
// pod's labels ("k8s:app=web"), its namespace's labels under
// "io.kubernetes.pod.namespace.labels." and its namespace's name under
// "io.kubernetes.pod.namespace" (services/identity/labels.h).
#include <optional>
#include <string>

#include "common/net/ip_address.h"
#include "services/identity/labels.h"
#include "services/policy/k8s/label_selector.h"
#include "services/policy/k8s/objects.h"

namespace ebpfcni::policy {

// An identity's labels split the way selectors look at them.
struct IdentityLabels {
  // Has a namespace: a pod identity. Reserved and other identities are never
  // selected by pod or namespace selectors.
  bool is_pod = false;
  std::string namespace_name;
  k8s::Labels pod_labels;
  k8s::Labels namespace_labels;  // always with kubernetes.io/metadata.name

  static IdentityLabels FromLabelSet(const identity::LabelSet& labels);
  static IdentityLabels ForPod(const std::string& pod_namespace, const k8s::Labels& pod_labels,
                               const k8s::Labels& namespace_labels);
  bool operator==(const IdentityLabels&) const = default;
};

// One element of a rule's from[]/to[] in the form the selector cache keeps:
// either a set of pods (namespace restriction and/or namespace selector,
// plus pod selector) or an ipBlock.
struct PeerSelector {
  enum class Kind { kPods, kIpBlock };
  Kind kind = Kind::kPods;
  // kPods. Kubernetes: a podSelector alone selects pods of the policy's own
  // namespace; a namespaceSelector (alone or with a podSelector) selects in
  // every matching namespace.
  std::optional<std::string> namespace_name;
  std::optional<k8s::LabelSelector> namespace_selector;
  k8s::LabelSelector pod_selector;  // empty = every pod
  // kIpBlock.
  k8s::IpBlock ip_block;

  static PeerSelector FromPeer(const k8s::NetworkPolicyPeer& peer, const std::string& policy_namespace);
  // Pods selected by a policy's spec.podSelector (its subjects).
  static PeerSelector Subjects(const std::string& policy_namespace, const k8s::LabelSelector& pod_selector);

  // The selector-cache key: equal for peers with the same meaning.
  std::string Key() const;
  bool MatchesIdentity(const IdentityLabels& labels) const;
  // kIpBlock: the identity of prefix Q (the ipcache's longest match for the
  // addresses only it covers) is allowed iff Q is inside cidr and not inside
  // any except.
  bool MatchesPrefix(const IpPrefix& prefix) const;
  // kIpBlock with a /0 cidr: addresses of its family outside every known
  // prefix carry that family's reserved world identity (world-ipv4 or
  // world-ipv6), which this returns; 0 for any other selector.
  uint32_t WorldIdentity() const;
};

}  // namespace ebpfcni::policy
