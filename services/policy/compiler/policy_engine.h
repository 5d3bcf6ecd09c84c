#pragma once
// PolicyEngine: networking.k8s.io/v1 NetworkPolicy + security identities ->
// each local endpoint's rule set in the datapath's terms, recomputed
// incrementally.
//
// Inputs: the cluster state (Namespaces, Pods, NetworkPolicies), the
// identities of the cluster (id -> label set, from the identity service) and
// this node's endpoints (from the datapath). Outputs: per endpoint a
// CompiledEndpointPolicy, the endpoints whose compiled policy changed since
// the last TakeDirtyEndpoints(), the CIDR identities (ipBlock prefixes) to
// install in the ipcache, rule-id descriptions and traces.
//
// Selectors are matched against identity label sets (as Cilium does), never
// against single pods: pods with the same security-relevant labels share an
// identity, so a new pod whose labels already have an identity changes no
// other endpoint's rules. Each distinct peer selector has one entry in a
// selector cache holding the identities it matches; an identity change
// re-evaluates the cached selectors once and recomputes only the endpoints
// of policies whose selectors' match sets changed.
//
// The semantics, each with its Kubernetes reference, are in
// docs/network-policy.md.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/net/ip_address.h"
#include "services/identity/label_filter.h"
#include "services/identity/labels.h"
#include "services/policy/compiler/compiled_policy.h"
#include "services/policy/compiler/rule_registry.h"
#include "services/policy/k8s/objects.h"

namespace ebpfcni::policy {

struct EndpointKey {
  std::string container_id, interface_name;
  auto operator<=>(const EndpointKey&) const = default;
  std::string ToString() const;  // "<container id>/<ifname>"
};

struct LocalEndpoint {
  EndpointKey key;
  uint32_t identity = 0;
  std::string pod_namespace, pod_name;
  std::vector<std::string> addresses;  // "10.0.0.5" (no prefix length)

  bool operator==(const LocalEndpoint&) const = default;
};

enum class TraceDecision { kAllowedByRule, kAllowedNotIsolated, kDeniedDefault };

struct DirectionTrace {
  TraceDecision decision = TraceDecision::kDeniedDefault;
  // Every rule that allows the connection, lowest id first (the datapath's
  // entry carries — and counts on — the lowest).
  std::vector<RuleInfo> allowing_rules;
  // "namespace/name" of every policy isolating the endpoint this way.
  std::vector<std::string> isolating_policies;
};

struct PrefixChanges {
  std::vector<std::pair<IpPrefix, uint32_t>> upserts;
  std::vector<IpPrefix> deletes;
  bool empty() const { return upserts.empty() && deletes.empty(); }
};

// A NetworkPolicy as ListPolicies shows it.
struct PolicySummary {
  std::string namespace_name, name;
  bool applies_to_ingress = false, applies_to_egress = false;  // effective policyTypes
  std::vector<EndpointKey> selected_endpoints;                 // local endpoints its podSelector selects
  std::vector<RuleInfo> rules;                                 // ingress first, by index
};

// Work counters, for benchmarks and GetStatus.
struct EngineStats {
  uint64_t endpoint_computations = 0;  // endpoint rule sets computed
  uint64_t endpoints_dirtied = 0;      // ...of which actually changed
  uint64_t selector_evaluations = 0;   // (selector, identity) match tests
  size_t selectors = 0;                // distinct peer selectors cached
  size_t identities = 0;               // known identities (not counting CIDR ones)
  size_t cidr_identities = 0;
  size_t endpoints = 0, pods = 0, namespaces = 0, policies = 0;
  size_t rules = 0;                    // compiled entries summed over endpoints
};

// Node-local identities of ipBlock prefixes: 1<<24 upwards (never a
// cluster identity, which fits in 16 bits).
inline constexpr uint32_t kFirstCidrIdentity = 1u << 24;

class PolicyEngine {  // not thread-safe: the agent serialises calls
 public:
  // `label_filter` must be the identity service's: it maps a Pod object to
  // the key of its identity (for egress named ports and pod addresses).
  explicit PolicyEngine(identity::LabelFilter label_filter = identity::LabelFilter::Default());
  ~PolicyEngine();
  PolicyEngine(const PolicyEngine&) = delete;
  PolicyEngine& operator=(const PolicyEngine&) = delete;

  void UpsertNamespace(const k8s::Namespace& ns);
  void DeleteNamespace(const std::string& name);
  void UpsertPod(const k8s::Pod& pod);
  void DeletePod(const std::string& ns, const std::string& name);
  void UpsertPolicy(const k8s::NetworkPolicy& policy);
  void DeletePolicy(const std::string& ns, const std::string& name);
  void UpsertIdentity(uint32_t id, const identity::LabelSet& labels);
  void DeleteIdentity(uint32_t id);
  void UpsertEndpoint(const LocalEndpoint& endpoint);  // a new endpoint is always dirty
  void DeleteEndpoint(const EndpointKey& key);

  // Defers recompilation until the outermost EndBatch(), so a cluster-state
  // batch or an identity snapshot recompiles each affected endpoint once
  // instead of once per object (at start-up: seconds -> milliseconds, see
  // docs/benchmarks.md). Until then PolicyOf, Trace and TakeDirtyEndpoints
  // see the compiled state of before the batch. Nestable.
  void BeginBatch();
  void EndBatch();

  // The policy a pod would get (for the CNI ADD, before its endpoint exists).
  CompiledEndpointPolicy ComputeFor(uint32_t identity, const std::string& pod_namespace, const std::string& pod_name);
  const CompiledEndpointPolicy* PolicyOf(const EndpointKey& key) const;  // nullptr if unknown endpoint
  const LocalEndpoint* EndpointOf(const EndpointKey& key) const;         // nullptr if unknown endpoint
  std::vector<EndpointKey> Endpoints() const;
  // The local endpoint of a pod, or of an address.
  std::optional<EndpointKey> EndpointOfPod(const std::string& ns, const std::string& name) const;
  std::optional<EndpointKey> EndpointOfAddress(const IpAddress& address) const;
  const k8s::Pod* FindPod(const std::string& ns, const std::string& name) const;
  const k8s::Namespace* FindNamespace(const std::string& name) const;
  // The identity the cluster state implies for a pod (its filtered label set
  // is a known identity), 0 if none is known.
  uint32_t IdentityOfPod(const std::string& ns, const std::string& name) const;

  // Endpoints whose compiled policy changed since the last call (sorted).
  std::vector<EndpointKey> TakeDirtyEndpoints();
  // CIDR identities to (un)install since the last call.
  PrefixChanges TakePrefixChanges();
  // Every CIDR identity currently needed (for a full resync after a restart).
  std::vector<std::pair<IpPrefix, uint32_t>> PrefixIdentities() const;

  std::optional<RuleInfo> DescribeRule(uint32_t rule_id) const;
  // Would `endpoint` allow traffic with `peer_identity` in `direction`
  // (ingress: from the peer to the endpoint's port; egress: from the
  // endpoint to the peer's port)? An unknown endpoint answers as a pod no
  // policy selects.
  DirectionTrace Trace(const EndpointKey& endpoint, Direction direction, uint32_t peer_identity, uint8_t protocol,
                       uint16_t port) const;
  // The same for a pod that is not (yet) a local endpoint.
  DirectionTrace TraceFor(uint32_t identity, const std::string& pod_namespace, const std::string& pod_name,
                          Direction direction, uint32_t peer_identity, uint8_t protocol, uint16_t port);
  // Local endpoints' and known pods' identities, CIDR identities (longest
  // prefix), else the family's reserved world identity (world-ipv4 9,
  // world-ipv6 10).
  uint32_t IdentityOfAddress(const IpAddress& address) const;

  std::vector<PolicySummary> ListPolicies(const std::string& namespace_filter = "") const;
  // Bumped whenever an endpoint's compiled policy or the CIDR identities change.
  uint64_t generation() const;
  EngineStats Stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ebpfcni::policy
