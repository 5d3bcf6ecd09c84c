#include "services/policy/compiler/policy_engine.h"

#include <algorithm>
#include <functional>
#include <tuple>

#include <absl/strings/str_cat.h>

#include "services/identity/reserved_identities.h"
#include "services/policy/compiler/cidr_identities.h"
#include "services/policy/compiler/peer_selector.h"

namespace ebpfcni::policy {

std::string EndpointKey::ToString() const { return absl::StrCat(container_id, "/", interface_name); }

namespace {

using PodKey = std::pair<std::string, std::string>;     // namespace, name
using PolicyKey = std::pair<std::string, std::string>;  // namespace, name
// The datapath's key of an allow entry: direction, peer, protocol, port, end port.
using EntryKey = std::tuple<Direction, uint32_t, uint8_t, uint16_t, uint16_t>;
// (entry, rule id) for every rule that produced an entry, sorted: the first
// id of a key is the lowest, which the datapath entry carries. A flat vector
// because compiling is mostly building this (an endpoint can have
// thousands of entries) and it is rebuilt on every recomputation.
using Contributors = std::vector<std::pair<EntryKey, uint32_t>>;
// A container port by (name, protocol, number).
using NamedPort = std::tuple<std::string, uint8_t, uint16_t>;

constexpr uint32_t kHostIdentity = static_cast<uint32_t>(identity::ReservedIdentity::kHost);

// One selector-cache entry: a peer selector and the identities it matches
// now, shared by every rule of every policy that names the same peer.
struct CachedSelector {
  PeerSelector selector;
  std::set<uint32_t> matches;
  // The family's world identity for a /0 ipBlock, else 0.
  uint32_t world_identity = 0;
  // Policy -> how many of its peers use this entry, in total and in
  // egress rules whose ports are all named.
  struct Use {
    int peers = 0;
    int named_port_only = 0;
  };
  std::map<PolicyKey, Use> users;
};

// A rule of a policy with its peers resolved to selector-cache entries.
struct RuleSource {
  uint32_t rule_id = 0;
  bool any_peer = false;  // from/to missing or empty
  std::vector<CachedSelector*> peers;
};

struct PolicyState {
  k8s::NetworkPolicy policy;
  std::vector<RuleSource> ingress, egress;  // parallel to policy.ingress / policy.egress
  std::vector<IpPrefix> prefixes;           // CIDR identities it holds a reference on
  // One per peer (with repetitions): the selector-cache key and whether the
  // peer is in an egress rule whose ports are all named.
  std::vector<std::pair<std::string, bool>> selector_keys;
  bool egress_named_ports = false;
};

struct PodState {
  k8s::Pod pod;
  std::string identity_key;  // key of its filtered label set
  uint32_t identity = 0;     // 0 until that label set's identity is known
};

struct IdentityState {
  identity::LabelSet labels;
  std::string key;
  IdentityLabels view;
};

struct EndpointState {
  LocalEndpoint endpoint;
  IdentityLabels subject;  // the labels its policies are selected by
  CompiledEndpointPolicy compiled;
  Contributors contributors;
};

struct Compilation {
  CompiledEndpointPolicy policy;
  Contributors contributors;
};

std::optional<IpAddress> ParseEndpointAddress(const std::string& text) {
  auto slash = text.find('/');
  auto address = IpAddress::Parse(slash == std::string::npos ? text : text.substr(0, slash));
  if (!address.ok()) return std::nullopt;
  return *address;
}

}  // namespace

struct PolicyEngine::State {
  explicit State(identity::LabelFilter filter) : label_filter(std::move(filter)) {}

  identity::LabelFilter label_filter;

  std::map<std::string, k8s::Namespace> namespaces;
  std::map<PodKey, PodState> pods;
  std::map<std::string, std::set<PodKey>> pods_by_namespace;
  std::map<std::string, std::set<PodKey>> pods_by_identity_key;
  std::map<IpAddress, PodKey> pod_by_address;

  std::map<uint32_t, IdentityState> identities;
  std::map<std::string, uint32_t> identity_by_key;
  // identity -> named container ports of the pods with that identity -> how many pods.
  std::map<uint32_t, std::map<NamedPort, int>> named_ports;

  std::map<std::string, std::map<std::string, PolicyState>> policies;  // namespace -> name ->
  std::set<PolicyKey> egress_named_port_policies;
  std::map<std::string, CachedSelector> pod_selectors;   // key -> entry
  std::map<std::string, CachedSelector> cidr_selectors;  // key -> entry
  CidrIdentities cidrs{kFirstCidrIdentity};
  RuleRegistry rules;

  std::map<EndpointKey, EndpointState> endpoints;
  std::map<std::string, std::set<EndpointKey>> endpoints_by_namespace;
  std::map<uint32_t, std::set<EndpointKey>> endpoints_by_identity;
  std::map<PodKey, std::set<EndpointKey>> endpoints_by_pod;
  std::map<IpAddress, EndpointKey> endpoint_by_address;

  // Work collected during one call, done by Flush().
  std::set<EndpointKey> pending;
  std::set<PolicyKey> affected_policies;

  std::set<EndpointKey> dirty;
  uint64_t generation = 0;
  EngineStats stats;

  // --- labels -----------------------------------------------------------------

  const k8s::Labels& NamespaceLabels(const std::string& name) const {
    static const k8s::Labels kNone;
    auto it = namespaces.find(name);
    return it == namespaces.end() ? kNone : it->second.labels;
  }

  // The labels a pod's policies are selected by: its identity's when known
  // (what the datapath enforces), else its Pod object's, else only its
  // namespace (then only policies with an empty podSelector select it).
  IdentityLabels SubjectOf(uint32_t identity, const std::string& ns, const std::string& name) const {
    if (auto it = identities.find(identity); it != identities.end() && it->second.view.is_pod) return it->second.view;
    if (auto it = pods.find({ns, name}); it != pods.end()) {
      return IdentityLabels::ForPod(ns, it->second.pod.labels, NamespaceLabels(ns));
    }
    return IdentityLabels::ForPod(ns, {}, NamespaceLabels(ns));
  }

  static bool Selects(const PolicyState& policy, const IdentityLabels& subject) {
    return subject.is_pod && subject.namespace_name == policy.policy.namespace_name &&
           policy.policy.pod_selector.Matches(subject.pod_labels);
  }

  // --- compilation --------------------------------------------------------------

  std::vector<uint32_t> PeerIdentities(const RuleSource& source) const {
    if (source.any_peer) return {0};
    std::vector<uint32_t> peers;
    for (const CachedSelector* selector : source.peers) {
      peers.insert(peers.end(), selector->matches.begin(), selector->matches.end());
      if (selector->world_identity != 0) peers.push_back(selector->world_identity);
    }
    if (source.peers.size() > 1) {
      std::sort(peers.begin(), peers.end());
      peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
    }
    return peers;
  }

  // Numbers of the container ports named `name` with `protocol` among the
  // pods of `identity`.
  void ForEachNamedPort(uint32_t identity, const std::string& name, uint8_t protocol,
                        const std::function<void(uint16_t)>& fn) const {
    auto table = named_ports.find(identity);
    if (table == named_ports.end()) return;
    for (auto it = table->second.lower_bound(NamedPort{name, protocol, 0});
         it != table->second.end() && std::get<0>(it->first) == name && std::get<1>(it->first) == protocol; ++it) {
      fn(std::get<2>(it->first));
    }
  }

  void AddRules(const PolicyState& policy, Direction direction, const k8s::Pod* local_pod,
                Contributors& entries) const {
    const auto& sources = direction == Direction::kIngress ? policy.ingress : policy.egress;
    const auto& rules = direction == Direction::kIngress ? policy.policy.ingress : policy.policy.egress;
    for (size_t i = 0; i < rules.size(); ++i) {
      const RuleSource& source = sources[i];
      const k8s::NetworkPolicyRule& rule = rules[i];
      auto add = [&](uint32_t peer, uint8_t protocol, uint16_t port, uint16_t end_port) {
        entries.emplace_back(EntryKey{direction, peer, protocol, port, end_port}, source.rule_id);
      };
      std::vector<uint32_t> peers = PeerIdentities(source);
      if (rule.ports.empty()) {
        for (uint32_t peer : peers) add(peer, 0, 0, 0);
        continue;
      }
      for (const k8s::NetworkPolicyPort& port : rule.ports) {
        if (port.named_port.empty()) {
          for (uint32_t peer : peers) add(peer, port.protocol, port.port, port.end_port);
        } else if (direction == Direction::kIngress) {
          // A named port of an ingress rule is a port of the selected pod itself.
          if (local_pod == nullptr) continue;
          for (const k8s::ContainerPort& container_port : local_pod->ports) {
            if (container_port.name != port.named_port || container_port.protocol != port.protocol) continue;
            for (uint32_t peer : peers) add(peer, port.protocol, container_port.port, 0);
          }
        } else if (source.any_peer) {
          // Egress to any peer on a named port: every pod that has that port.
          for (const auto& [identity, table] : named_ports) {
            ForEachNamedPort(identity, port.named_port, port.protocol,
                             [&](uint16_t number) { add(identity, port.protocol, number, 0); });
          }
        } else {
          // Egress: resolved per destination (per identity of the peer pods).
          for (uint32_t peer : peers) {
            ForEachNamedPort(peer, port.named_port, port.protocol,
                             [&](uint16_t number) { add(peer, port.protocol, number, 0); });
          }
        }
      }
    }
  }

  Compilation Compile(const IdentityLabels& subject, const std::string& pod_namespace,
                      const std::string& pod_name) {
    ++stats.endpoint_computations;
    Compilation result;
    auto by_name = policies.find(subject.namespace_name);
    if (subject.is_pod && by_name != policies.end()) {
      const k8s::Pod* local_pod = nullptr;
      if (auto pod = pods.find({pod_namespace, pod_name}); pod != pods.end()) local_pod = &pod->second.pod;
      for (const auto& [name, policy] : by_name->second) {
        if (!Selects(policy, subject)) continue;
        if (policy.policy.applies_to_ingress) {
          result.policy.ingress_isolated = true;
          AddRules(policy, Direction::kIngress, local_pod, result.contributors);
        }
        if (policy.policy.applies_to_egress) {
          result.policy.egress_isolated = true;
          AddRules(policy, Direction::kEgress, local_pod, result.contributors);
        }
      }
    }
    if (result.policy.ingress_isolated) {
      // Kubernetes: traffic from the node to its pods is always allowed.
      result.contributors.emplace_back(EntryKey{Direction::kIngress, kHostIdentity, 0, 0, 0}, kNodeTrafficRuleId);
    }
    if (result.policy.egress_isolated) {
      // ... and from its pods to the node ("traffic to and from the node").
      result.contributors.emplace_back(EntryKey{Direction::kEgress, kHostIdentity, 0, 0, 0}, kPodToNodeTrafficRuleId);
    }
    Contributors& entries = result.contributors;
    std::sort(entries.begin(), entries.end());
    entries.erase(std::unique(entries.begin(), entries.end()), entries.end());
    entries.shrink_to_fit();
    result.policy.rules.reserve(entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i > 0 && entries[i].first == entries[i - 1].first) continue;  // a higher id of the same entry
      const auto& [direction, peer, protocol, port, end_port] = entries[i].first;
      result.policy.rules.push_back(CompiledRule{direction, peer, protocol, port, end_port, entries[i].second});
    }
    result.policy.rules.shrink_to_fit();
    return result;
  }

  // Recomputes one endpoint; true if its compiled policy changed.
  bool Recompute(EndpointState& endpoint) {
    Compilation result = Compile(endpoint.subject, endpoint.endpoint.pod_namespace, endpoint.endpoint.pod_name);
    endpoint.contributors = std::move(result.contributors);
    if (result.policy == endpoint.compiled) return false;
    endpoint.compiled = std::move(result.policy);
    ++stats.endpoints_dirtied;
    return true;
  }

  bool RefreshSubject(EndpointState& endpoint) {
    IdentityLabels subject =
        SubjectOf(endpoint.endpoint.identity, endpoint.endpoint.pod_namespace, endpoint.endpoint.pod_name);
    if (subject == endpoint.subject) return false;
    endpoint.subject = std::move(subject);
    return true;
  }

  int batch_depth = 0;

  // Recomputes the pending endpoints and those of affected policies.
  void Flush() {
    if (batch_depth > 0) return;
    for (const PolicyKey& key : affected_policies) {
      auto by_name = policies.find(key.first);
      if (by_name == policies.end()) continue;
      auto policy = by_name->second.find(key.second);
      if (policy == by_name->second.end()) continue;
      MarkSelectedBy(policy->second);
    }
    affected_policies.clear();
    bool changed = false;
    for (const EndpointKey& key : pending) {
      auto it = endpoints.find(key);
      if (it == endpoints.end()) continue;
      if (Recompute(it->second)) {
        dirty.insert(key);
        changed = true;
      }
    }
    pending.clear();
    if (changed) ++generation;
  }

  void MarkSelectedBy(const PolicyState& policy) {
    auto in_namespace = endpoints_by_namespace.find(policy.policy.namespace_name);
    if (in_namespace == endpoints_by_namespace.end()) return;
    for (const EndpointKey& key : in_namespace->second) {
      if (Selects(policy, endpoints.at(key).subject)) pending.insert(key);
    }
  }

  void MarkUsers(const CachedSelector& selector) {
    for (const auto& [user, use] : selector.users) affected_policies.insert(user);
  }

  // `identity` entered or left the selector's match set. A rule whose ports
  // are all named gets entries only for peers that have such ports, so an
  // identity without named ports changes nothing there (when its pods'
  // ports appear, CountNamedPorts marks those policies).
  void MarkUsersForIdentity(const CachedSelector& selector, uint32_t identity) {
    bool has_named_ports = named_ports.count(identity) > 0;
    for (const auto& [user, use] : selector.users) {
      if (has_named_ports || use.peers > use.named_port_only) affected_policies.insert(user);
    }
  }

  // --- selector cache -------------------------------------------------------------

  void Evaluate(CachedSelector& entry) {
    if (entry.selector.kind == PeerSelector::Kind::kPods) {
      for (const auto& [id, identity] : identities) {
        ++stats.selector_evaluations;
        if (entry.selector.MatchesIdentity(identity.view)) entry.matches.insert(id);
      }
    } else {
      for (const auto& [prefix, id] : cidrs.All()) {
        ++stats.selector_evaluations;
        if (entry.selector.MatchesPrefix(prefix)) entry.matches.insert(id);
      }
      entry.world_identity = entry.selector.WorldIdentity();
    }
  }

  std::map<std::string, CachedSelector>& CacheFor(PeerSelector::Kind kind) {
    return kind == PeerSelector::Kind::kPods ? pod_selectors : cidr_selectors;
  }

  CachedSelector* AcquireSelector(const PeerSelector& selector, const PolicyKey& user, bool named_port_only,
                                  PolicyState& state) {
    std::string key = selector.Key();
    auto [it, inserted] = CacheFor(selector.kind).try_emplace(key);
    if (inserted) {
      it->second.selector = selector;
      Evaluate(it->second);
    }
    CachedSelector::Use& use = it->second.users[user];
    ++use.peers;
    if (named_port_only) ++use.named_port_only;
    state.selector_keys.emplace_back(std::move(key), named_port_only);
    return &it->second;
  }

  void ReleaseSelector(const std::string& key, bool named_port_only, const PolicyKey& user) {
    auto& cache = key.rfind("cidr:", 0) == 0 ? cidr_selectors : pod_selectors;
    auto it = cache.find(key);
    if (it == cache.end()) return;
    auto use = it->second.users.find(user);
    if (use != it->second.users.end()) {
      if (named_port_only) --use->second.named_port_only;
      if (--use->second.peers == 0) it->second.users.erase(use);
    }
    if (it->second.users.empty()) cache.erase(it);
  }

  void AcquirePrefix(const IpPrefix& prefix, PolicyState& state) {
    state.prefixes.push_back(prefix);
    auto [id, allocated] = cidrs.Acquire(prefix);
    if (!allocated) return;
    // A new, more specific prefix takes its addresses away from the
    // identity of the enclosing prefix: every ipBlock containing it must
    // now list it too.
    for (auto& [key, entry] : cidr_selectors) {
      ++stats.selector_evaluations;
      if (entry.selector.MatchesPrefix(prefix) && entry.matches.insert(id).second) MarkUsers(entry);
    }
  }

  void ReleasePrefix(const IpPrefix& prefix) {
    std::optional<uint32_t> released = cidrs.Release(prefix);
    if (!released.has_value()) return;
    for (auto& [key, entry] : cidr_selectors) {
      if (entry.matches.erase(*released) > 0) MarkUsers(entry);
    }
  }

  void ReleasePolicy(PolicyState& state, const PolicyKey& key) {
    for (const auto& [selector, named_port_only] : state.selector_keys) ReleaseSelector(selector, named_port_only, key);
    for (const IpPrefix& prefix : state.prefixes) ReleasePrefix(prefix);
    state.selector_keys.clear();
    state.prefixes.clear();
  }

  // --- pods and their identities ------------------------------------------------------

  void CountNamedPorts(uint32_t identity, const k8s::Pod& pod, int delta) {
    if (identity == 0) return;
    bool changed = false;
    for (const k8s::ContainerPort& port : pod.ports) {
      if (port.name.empty()) continue;
      auto& table = named_ports[identity];
      NamedPort key{port.name, port.protocol, port.port};
      if (delta > 0) {
        if (table[key]++ == 0) changed = true;
      } else if (auto it = table.find(key); it != table.end() && --it->second == 0) {
        table.erase(it);
        changed = true;
        if (table.empty()) named_ports.erase(identity);
      }
    }
    // Egress named ports resolve through this table: the policies using
    // them must be recompiled when a (name, protocol, number) appears or goes.
    if (changed) affected_policies.insert(egress_named_port_policies.begin(), egress_named_port_policies.end());
  }

  std::string PodIdentityKey(const k8s::Pod& pod) const {
    return label_filter
        .Filter(identity::PodLabelSet(pod.namespace_name, pod.labels, NamespaceLabels(pod.namespace_name)))
        .Key();
  }

  uint32_t IdentityOfKey(const std::string& key) const {
    auto it = identity_by_key.find(key);
    return it == identity_by_key.end() ? 0 : it->second;
  }

  void SetPodIdentity(PodState& state, uint32_t identity) {
    if (state.identity == identity) return;
    CountNamedPorts(state.identity, state.pod, -1);
    state.identity = identity;
    CountNamedPorts(state.identity, state.pod, +1);
  }

  void RebindPods(const std::string& key) {
    auto it = pods_by_identity_key.find(key);
    if (it == pods_by_identity_key.end()) return;
    uint32_t identity = IdentityOfKey(key);
    for (const PodKey& pod : it->second) SetPodIdentity(pods.at(pod), identity);
  }

  void IndexPod(const PodKey& key, PodState& state) {
    state.identity_key = PodIdentityKey(state.pod);
    pods_by_identity_key[state.identity_key].insert(key);
    pods_by_namespace[key.first].insert(key);
    for (const std::string& text : state.pod.pod_ips) {
      if (auto address = ParseEndpointAddress(text)) pod_by_address[*address] = key;
    }
    uint32_t identity = IdentityOfKey(state.identity_key);
    state.identity = 0;
    SetPodIdentity(state, identity);
  }

  void UnindexPod(const PodKey& key, PodState& state) {
    SetPodIdentity(state, 0);
    if (auto it = pods_by_identity_key.find(state.identity_key); it != pods_by_identity_key.end()) {
      it->second.erase(key);
      if (it->second.empty()) pods_by_identity_key.erase(it);
    }
    if (auto it = pods_by_namespace.find(key.first); it != pods_by_namespace.end()) {
      it->second.erase(key);
      if (it->second.empty()) pods_by_namespace.erase(it);
    }
    for (const std::string& text : state.pod.pod_ips) {
      auto address = ParseEndpointAddress(text);
      if (!address) continue;
      if (auto it = pod_by_address.find(*address); it != pod_by_address.end() && it->second == key) {
        pod_by_address.erase(it);
      }
    }
  }

  // Pods of the namespace map to other label sets (their identities are
  // re-resolved by the agent; until then their old ones stay in force), and
  // endpoints whose identity is unknown are selected by the namespace's labels.
  void NamespaceLabelsChanged(const std::string& name) {
    if (auto in_namespace = pods_by_namespace.find(name); in_namespace != pods_by_namespace.end()) {
      std::set<PodKey> keys = in_namespace->second;  // re-indexing edits the index
      for (const PodKey& key : keys) {
        PodState& pod = pods.at(key);
        UnindexPod(key, pod);
        IndexPod(key, pod);
      }
    }
    if (auto in_namespace = endpoints_by_namespace.find(name); in_namespace != endpoints_by_namespace.end()) {
      for (const EndpointKey& key : in_namespace->second) {
        if (RefreshSubject(endpoints.at(key))) pending.insert(key);
      }
    }
    Flush();
  }

  // The endpoints of a pod: their fallback labels and ingress named ports
  // come from the Pod object.
  void MarkEndpointsOfPod(const PodKey& key) {
    auto it = endpoints_by_pod.find(key);
    if (it == endpoints_by_pod.end()) return;
    for (const EndpointKey& endpoint : it->second) {
      RefreshSubject(endpoints.at(endpoint));
      pending.insert(endpoint);
    }
  }

  // --- endpoints ------------------------------------------------------------------------

  void IndexEndpoint(const EndpointState& state) {
    const LocalEndpoint& endpoint = state.endpoint;
    endpoints_by_namespace[endpoint.pod_namespace].insert(endpoint.key);
    endpoints_by_identity[endpoint.identity].insert(endpoint.key);
    endpoints_by_pod[{endpoint.pod_namespace, endpoint.pod_name}].insert(endpoint.key);
    for (const std::string& text : endpoint.addresses) {
      if (auto address = ParseEndpointAddress(text)) endpoint_by_address[*address] = endpoint.key;
    }
  }

  template <typename Map, typename Index>
  static void EraseFromIndex(Map& map, const Index& index, const EndpointKey& key) {
    auto it = map.find(index);
    if (it == map.end()) return;
    it->second.erase(key);
    if (it->second.empty()) map.erase(it);
  }

  void UnindexEndpoint(const EndpointState& state) {
    const LocalEndpoint& endpoint = state.endpoint;
    EraseFromIndex(endpoints_by_namespace, endpoint.pod_namespace, endpoint.key);
    EraseFromIndex(endpoints_by_identity, endpoint.identity, endpoint.key);
    EraseFromIndex(endpoints_by_pod, PodKey{endpoint.pod_namespace, endpoint.pod_name}, endpoint.key);
    for (const std::string& text : endpoint.addresses) {
      auto address = ParseEndpointAddress(text);
      if (!address) continue;
      if (auto it = endpoint_by_address.find(*address); it != endpoint_by_address.end() && it->second == endpoint.key) {
        endpoint_by_address.erase(it);
      }
    }
  }

  // --- trace ------------------------------------------------------------------------------

  std::vector<std::string> IsolatingPolicies(const IdentityLabels& subject, Direction direction) const {
    std::vector<std::string> names;
    auto by_name = policies.find(subject.namespace_name);
    if (by_name == policies.end()) return names;
    for (const auto& [name, policy] : by_name->second) {
      bool applies = direction == Direction::kIngress ? policy.policy.applies_to_ingress
                                                      : policy.policy.applies_to_egress;
      if (applies && Selects(policy, subject)) names.push_back(absl::StrCat(subject.namespace_name, "/", name));
    }
    return names;
  }

  DirectionTrace TraceCompiled(const IdentityLabels& subject, const CompiledEndpointPolicy& compiled,
                               const Contributors& contributors, Direction direction, uint32_t peer,
                               uint8_t protocol, uint16_t port) const {
    DirectionTrace trace;
    bool isolated = direction == Direction::kIngress ? compiled.ingress_isolated : compiled.egress_isolated;
    if (!isolated) {
      trace.decision = TraceDecision::kAllowedNotIsolated;
      return trace;
    }
    trace.isolating_policies = IsolatingPolicies(subject, direction);
    std::set<uint32_t> allowing;
    for (const auto& [key, id] : contributors) {
      const auto& [entry_direction, entry_peer, entry_protocol, entry_port, entry_end_port] = key;
      CompiledRule rule{entry_direction, entry_peer, entry_protocol, entry_port, entry_end_port, 0};
      if (entry_direction == direction && rule.Allows(peer, protocol, port)) allowing.insert(id);
    }
    for (uint32_t id : allowing) {
      if (auto info = rules.Describe(id)) trace.allowing_rules.push_back(*info);
    }
    trace.decision = trace.allowing_rules.empty() ? TraceDecision::kDeniedDefault : TraceDecision::kAllowedByRule;
    return trace;
  }
};

// --- PolicyEngine --------------------------------------------------------------------------

PolicyEngine::PolicyEngine(identity::LabelFilter label_filter)
    : state_(std::make_unique<State>(std::move(label_filter))) {}

PolicyEngine::~PolicyEngine() = default;

uint64_t PolicyEngine::generation() const { return state_->generation; }

void PolicyEngine::BeginBatch() { ++state_->batch_depth; }

void PolicyEngine::EndBatch() {
  if (state_->batch_depth == 0) return;
  if (--state_->batch_depth == 0) state_->Flush();
}

void PolicyEngine::UpsertNamespace(const k8s::Namespace& ns) {
  State& s = *state_;
  auto it = s.namespaces.find(ns.name);
  if (it != s.namespaces.end() && it->second == ns) return;
  s.namespaces[ns.name] = ns;
  s.NamespaceLabelsChanged(ns.name);
}

void PolicyEngine::DeleteNamespace(const std::string& name) {
  State& s = *state_;
  if (s.namespaces.erase(name) == 0) return;
  s.NamespaceLabelsChanged(name);
}

void PolicyEngine::UpsertPod(const k8s::Pod& pod) {
  State& s = *state_;
  PodKey key{pod.namespace_name, pod.name};
  auto it = s.pods.find(key);
  if (it != s.pods.end()) {
    if (it->second.pod == pod) return;
    s.UnindexPod(key, it->second);
  }
  PodState& state = s.pods[key];
  state.pod = pod;
  s.IndexPod(key, state);
  s.MarkEndpointsOfPod(key);
  s.Flush();
}

void PolicyEngine::DeletePod(const std::string& ns, const std::string& name) {
  State& s = *state_;
  PodKey key{ns, name};
  auto it = s.pods.find(key);
  if (it == s.pods.end()) return;
  s.UnindexPod(key, it->second);
  s.pods.erase(it);
  s.MarkEndpointsOfPod(key);
  s.Flush();
}

void PolicyEngine::UpsertPolicy(const k8s::NetworkPolicy& policy) {
  State& s = *state_;
  PolicyKey key{policy.namespace_name, policy.name};
  auto& by_name = s.policies[policy.namespace_name];
  auto old = by_name.find(policy.name);
  if (old != by_name.end()) {
    if (old->second.policy == policy) return;
    // Endpoints it selected before may lose its rules or their isolation.
    s.MarkSelectedBy(old->second);
  }

  PolicyState next;
  next.policy = policy;
  // Prefixes first, so new selectors are evaluated against them and shared
  // prefixes keep their identities across the update.
  for (const auto* rules : {&policy.ingress, &policy.egress}) {
    for (const k8s::NetworkPolicyRule& rule : *rules) {
      for (const k8s::NetworkPolicyPeer& peer : rule.peers) {
        if (!peer.ip_block.has_value()) continue;
        s.AcquirePrefix(peer.ip_block->cidr, next);
        for (const IpPrefix& except : peer.ip_block->except) s.AcquirePrefix(except, next);
      }
    }
  }
  for (Direction direction : {Direction::kIngress, Direction::kEgress}) {
    const auto& rules = direction == Direction::kIngress ? policy.ingress : policy.egress;
    auto& sources = direction == Direction::kIngress ? next.ingress : next.egress;
    for (size_t i = 0; i < rules.size(); ++i) {
      RuleSource source;
      source.rule_id = s.rules.IdFor(policy.namespace_name, policy.name, direction, static_cast<uint32_t>(i));
      source.any_peer = rules[i].peers.empty();
      bool named_port_only = direction == Direction::kEgress && !rules[i].ports.empty() &&
                             std::all_of(rules[i].ports.begin(), rules[i].ports.end(),
                                         [](const k8s::NetworkPolicyPort& port) { return !port.named_port.empty(); });
      for (const k8s::NetworkPolicyPeer& peer : rules[i].peers) {
        source.peers.push_back(
            s.AcquireSelector(PeerSelector::FromPeer(peer, policy.namespace_name), key, named_port_only, next));
      }
      if (direction == Direction::kEgress) {
        for (const auto& port : rules[i].ports) next.egress_named_ports |= !port.named_port.empty();
      }
      sources.push_back(std::move(source));
    }
    s.rules.Release(policy.namespace_name, policy.name, direction, static_cast<uint32_t>(rules.size()));
  }
  if (old != by_name.end()) s.ReleasePolicy(old->second, key);
  by_name[policy.name] = std::move(next);
  if (by_name[policy.name].egress_named_ports) {
    s.egress_named_port_policies.insert(key);
  } else {
    s.egress_named_port_policies.erase(key);
  }
  s.affected_policies.insert(key);
  s.Flush();
}

void PolicyEngine::DeletePolicy(const std::string& ns, const std::string& name) {
  State& s = *state_;
  auto by_name = s.policies.find(ns);
  if (by_name == s.policies.end()) return;
  auto it = by_name->second.find(name);
  if (it == by_name->second.end()) return;
  PolicyKey key{ns, name};
  s.MarkSelectedBy(it->second);
  s.ReleasePolicy(it->second, key);
  s.rules.Release(ns, name, Direction::kIngress, 0);
  s.rules.Release(ns, name, Direction::kEgress, 0);
  s.egress_named_port_policies.erase(key);
  by_name->second.erase(it);
  if (by_name->second.empty()) s.policies.erase(by_name);
  s.affected_policies.erase(key);
  s.Flush();
}

void PolicyEngine::UpsertIdentity(uint32_t id, const identity::LabelSet& labels) {
  State& s = *state_;
  auto it = s.identities.find(id);
  std::string old_key;
  if (it != s.identities.end()) {
    if (it->second.labels == labels) return;
    old_key = it->second.key;
    if (s.IdentityOfKey(old_key) == id) s.identity_by_key.erase(old_key);
  }
  IdentityState& state = s.identities[id];
  state.labels = labels;
  state.key = labels.Key();
  state.view = IdentityLabels::FromLabelSet(labels);
  // Reserved identities are never pods, whatever labels they carry.
  if (id < identity::kFirstAllocatableIdentity) state.view.is_pod = false;
  s.identity_by_key[state.key] = id;

  // One pass over the selector cache: only policies whose peer sets change
  // are recompiled.
  for (auto& [key, entry] : s.pod_selectors) {
    ++s.stats.selector_evaluations;
    bool matches = entry.selector.MatchesIdentity(state.view);
    bool had = entry.matches.count(id) > 0;
    if (matches == had) continue;
    if (matches) {
      entry.matches.insert(id);
    } else {
      entry.matches.erase(id);
    }
    s.MarkUsersForIdentity(entry, id);
  }
  if (!old_key.empty()) s.RebindPods(old_key);
  s.RebindPods(state.key);
  if (auto endpoints = s.endpoints_by_identity.find(id); endpoints != s.endpoints_by_identity.end()) {
    for (const EndpointKey& key : endpoints->second) {
      if (s.RefreshSubject(s.endpoints.at(key))) s.pending.insert(key);
    }
  }
  s.Flush();
}

void PolicyEngine::DeleteIdentity(uint32_t id) {
  State& s = *state_;
  auto it = s.identities.find(id);
  if (it == s.identities.end()) return;
  std::string key = it->second.key;
  s.identities.erase(it);
  if (s.IdentityOfKey(key) == id) s.identity_by_key.erase(key);
  for (auto& [selector_key, entry] : s.pod_selectors) {
    if (entry.matches.erase(id) > 0) s.MarkUsersForIdentity(entry, id);
  }
  s.RebindPods(key);
  if (auto endpoints = s.endpoints_by_identity.find(id); endpoints != s.endpoints_by_identity.end()) {
    for (const EndpointKey& endpoint : endpoints->second) {
      if (s.RefreshSubject(s.endpoints.at(endpoint))) s.pending.insert(endpoint);
    }
  }
  s.Flush();
}

void PolicyEngine::UpsertEndpoint(const LocalEndpoint& endpoint) {
  State& s = *state_;
  auto it = s.endpoints.find(endpoint.key);
  bool is_new = it == s.endpoints.end();
  if (!is_new) {
    if (it->second.endpoint == endpoint) return;
    s.UnindexEndpoint(it->second);
  }
  EndpointState& state = s.endpoints[endpoint.key];
  state.endpoint = endpoint;
  s.IndexEndpoint(state);
  s.RefreshSubject(state);
  s.pending.insert(endpoint.key);
  s.Flush();
  if (is_new) {
    // Nothing was pushed for it yet (or the datapath's copy is unknown).
    s.dirty.insert(endpoint.key);
    ++s.generation;
  }
}

void PolicyEngine::DeleteEndpoint(const EndpointKey& key) {
  State& s = *state_;
  auto it = s.endpoints.find(key);
  if (it == s.endpoints.end()) return;
  s.UnindexEndpoint(it->second);
  s.endpoints.erase(it);
  s.dirty.erase(key);
  s.pending.erase(key);
}

CompiledEndpointPolicy PolicyEngine::ComputeFor(uint32_t identity, const std::string& pod_namespace,
                                                const std::string& pod_name) {
  return state_->Compile(state_->SubjectOf(identity, pod_namespace, pod_name), pod_namespace, pod_name).policy;
}

const CompiledEndpointPolicy* PolicyEngine::PolicyOf(const EndpointKey& key) const {
  auto it = state_->endpoints.find(key);
  return it == state_->endpoints.end() ? nullptr : &it->second.compiled;
}

const LocalEndpoint* PolicyEngine::EndpointOf(const EndpointKey& key) const {
  auto it = state_->endpoints.find(key);
  return it == state_->endpoints.end() ? nullptr : &it->second.endpoint;
}

std::vector<EndpointKey> PolicyEngine::Endpoints() const {
  std::vector<EndpointKey> keys;
  keys.reserve(state_->endpoints.size());
  for (const auto& [key, state] : state_->endpoints) keys.push_back(key);
  return keys;
}

std::optional<EndpointKey> PolicyEngine::EndpointOfPod(const std::string& ns, const std::string& name) const {
  auto it = state_->endpoints_by_pod.find({ns, name});
  if (it == state_->endpoints_by_pod.end() || it->second.empty()) return std::nullopt;
  return *it->second.begin();
}

std::optional<EndpointKey> PolicyEngine::EndpointOfAddress(const IpAddress& address) const {
  auto it = state_->endpoint_by_address.find(address);
  if (it == state_->endpoint_by_address.end()) return std::nullopt;
  return it->second;
}

const k8s::Pod* PolicyEngine::FindPod(const std::string& ns, const std::string& name) const {
  auto it = state_->pods.find({ns, name});
  return it == state_->pods.end() ? nullptr : &it->second.pod;
}

const k8s::Namespace* PolicyEngine::FindNamespace(const std::string& name) const {
  auto it = state_->namespaces.find(name);
  return it == state_->namespaces.end() ? nullptr : &it->second;
}

uint32_t PolicyEngine::IdentityOfPod(const std::string& ns, const std::string& name) const {
  auto it = state_->pods.find({ns, name});
  return it == state_->pods.end() ? 0 : it->second.identity;
}

std::vector<EndpointKey> PolicyEngine::TakeDirtyEndpoints() {
  std::vector<EndpointKey> dirty(state_->dirty.begin(), state_->dirty.end());
  state_->dirty.clear();
  return dirty;
}

PrefixChanges PolicyEngine::TakePrefixChanges() {
  auto [upserts, deletes] = state_->cidrs.TakeChanges();
  if (!upserts.empty() || !deletes.empty()) ++state_->generation;
  return PrefixChanges{std::move(upserts), std::move(deletes)};
}

std::vector<std::pair<IpPrefix, uint32_t>> PolicyEngine::PrefixIdentities() const { return state_->cidrs.All(); }

std::optional<RuleInfo> PolicyEngine::DescribeRule(uint32_t rule_id) const { return state_->rules.Describe(rule_id); }

DirectionTrace PolicyEngine::Trace(const EndpointKey& endpoint, Direction direction, uint32_t peer_identity,
                                   uint8_t protocol, uint16_t port) const {
  auto it = state_->endpoints.find(endpoint);
  if (it == state_->endpoints.end()) return DirectionTrace{TraceDecision::kAllowedNotIsolated, {}, {}};
  return state_->TraceCompiled(it->second.subject, it->second.compiled, it->second.contributors, direction,
                               peer_identity, protocol, port);
}

DirectionTrace PolicyEngine::TraceFor(uint32_t identity, const std::string& pod_namespace, const std::string& pod_name,
                                      Direction direction, uint32_t peer_identity, uint8_t protocol, uint16_t port) {
  IdentityLabels subject = state_->SubjectOf(identity, pod_namespace, pod_name);
  Compilation compiled = state_->Compile(subject, pod_namespace, pod_name);
  return state_->TraceCompiled(subject, compiled.policy, compiled.contributors, direction, peer_identity, protocol,
                               port);
}

uint32_t PolicyEngine::IdentityOfAddress(const IpAddress& address) const {
  const State& s = *state_;
  if (auto it = s.endpoint_by_address.find(address); it != s.endpoint_by_address.end()) {
    uint32_t identity = s.endpoints.at(it->second).endpoint.identity;
    if (identity != 0) return identity;
  }
  if (auto it = s.pod_by_address.find(address); it != s.pod_by_address.end()) {
    uint32_t identity = s.pods.at(it->second).identity;
    if (identity != 0) return identity;
  }
  if (uint32_t identity = s.cidrs.Lookup(address); identity != 0) return identity;
  return static_cast<uint32_t>(identity::WorldOf(address.is_v4()));
}

std::vector<PolicySummary> PolicyEngine::ListPolicies(const std::string& namespace_filter) const {
  const State& s = *state_;
  std::vector<PolicySummary> list;
  for (const auto& [ns, by_name] : s.policies) {
    if (!namespace_filter.empty() && ns != namespace_filter) continue;
    for (const auto& [name, policy] : by_name) {
      PolicySummary summary;
      summary.namespace_name = ns;
      summary.name = name;
      summary.applies_to_ingress = policy.policy.applies_to_ingress;
      summary.applies_to_egress = policy.policy.applies_to_egress;
      if (auto endpoints = s.endpoints_by_namespace.find(ns); endpoints != s.endpoints_by_namespace.end()) {
        for (const EndpointKey& key : endpoints->second) {
          if (State::Selects(policy, s.endpoints.at(key).subject)) summary.selected_endpoints.push_back(key);
        }
      }
      summary.rules = s.rules.RulesOf(ns, name);
      list.push_back(std::move(summary));
    }
  }
  return list;
}

EngineStats PolicyEngine::Stats() const {
  const State& s = *state_;
  EngineStats stats = s.stats;
  stats.selectors = s.pod_selectors.size() + s.cidr_selectors.size();
  stats.identities = s.identities.size();
  stats.cidr_identities = s.cidrs.size();
  stats.endpoints = s.endpoints.size();
  stats.pods = s.pods.size();
  stats.namespaces = s.namespaces.size();
  for (const auto& [ns, by_name] : s.policies) stats.policies += by_name.size();
  stats.rules = 0;
  for (const auto& [key, endpoint] : s.endpoints) stats.rules += endpoint.compiled.rules.size();
  return stats;
}

}  // namespace ebpfcni::policy
