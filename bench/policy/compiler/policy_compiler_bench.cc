// PolicyEngine cost as endpoints, identities and policies grow: time to
// compile a whole node from scratch, the memory the compiled state holds,
// and what one change costs — a new pod with labels that already have an
// identity (must dirty no other endpoint), one policy edit, one new
// identity. Figures and the command in docs/benchmarks.md.
//
// The synthetic cluster: 10 namespaces (labels team=t0..t2, env), `apps`
// apps per namespace (app=app-N; pods of one app share an identity),
// `endpoints` local pods spread round-robin over namespaces and apps, each
// with a container port named "http". Policy q lives in namespace q%10,
// selects one app and allows ingress from two apps of its namespace and
// from one app in every namespace of a team (TCP 80 and 8080-8090), egress
// to one app on TCP 5432, to a /16 ipBlock with an except on 443, and every
// 10th policy also egress to the "http" named port — every semantic the
// compiler has, at once.
#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include "services/identity/label_filter.h"
#include "services/policy/compiler/policy_engine.h"
#include "services/policy/k8s/objects.h"

// --- live heap bytes: every allocation of the process goes through here ---------

namespace {
std::atomic<int64_t> live_heap_bytes{0};
}  // namespace

void* operator new(size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  live_heap_bytes.fetch_add(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  return p;
}
void* operator new[](size_t size) { return operator new(size); }
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  live_heap_bytes.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  std::free(p);
}
void operator delete[](void* p) noexcept { operator delete(p); }
void operator delete(void* p, size_t) noexcept { operator delete(p); }
void operator delete[](void* p, size_t) noexcept { operator delete(p); }

namespace ebpfcni::policy {
namespace {

constexpr int kNamespaces = 10;

std::string NamespaceName(int i) { return "ns-" + std::to_string(i % kNamespaces); }
std::string AppName(int i) { return "app-" + std::to_string(i); }

struct ClusterShape {
  int endpoints;
  int policies;
  int apps;  // per namespace; identities = 10 * apps when every app has a pod
};

class SyntheticCluster {
 public:
  explicit SyntheticCluster(ClusterShape shape) : shape_(shape) {}

  k8s::Namespace Namespace(int i) const {
    k8s::Namespace ns;
    ns.name = NamespaceName(i);
    ns.labels = {{k8s::kNamespaceNameLabel, ns.name}, {"team", "t" + std::to_string(i % 3)},
                 {"env", i % 2 == 0 ? "prod" : "dev"}};
    return ns;
  }

  k8s::Pod Pod(int k, const std::string& name) const {
    k8s::Pod pod;
    pod.namespace_name = NamespaceName(k);
    pod.name = name;
    pod.labels = {{"app", AppName((k / kNamespaces) % shape_.apps)}, {"pod-template-hash", std::to_string(k)}};
    pod.ports = {{"http", static_cast<uint16_t>(8000 + (k / kNamespaces) % shape_.apps % 50), k8s::kProtocolTcp}};
    pod.pod_ips = {IpFor(k)};
    return pod;
  }

  static std::string IpFor(int k) {
    return "10.244." + std::to_string(k / 250) + "." + std::to_string(k % 250 + 1);
  }

  identity::LabelSet LabelsOf(const k8s::Pod& pod, const k8s::Namespace& ns) const {
    return filter_.Filter(identity::PodLabelSet(pod.namespace_name, pod.labels, ns.labels));
  }

  k8s::NetworkPolicy Policy(int q, int port_shift = 0) const {
    std::string ns = NamespaceName(q);
    int a = shape_.apps;
    nlohmann::json egress = nlohmann::json::array({
        {{"to", {{{"podSelector", {{"matchLabels", {{"app", AppName((q + 3) % a)}}}}}}}},
         {"ports", {{{"port", 5432}}}}},
        {{"to", {{{"ipBlock", {{"cidr", "10." + std::to_string(q % 200) + ".0.0/16"},
                               {"except", {"10." + std::to_string(q % 200) + ".1.0/24"}}}}}}},
         {"ports", {{{"port", 443 + port_shift}}}}},
    });
    if (q % 10 == 0) {
      egress.push_back({{"to", {{{"namespaceSelector", nlohmann::json::object()}}}}, {"ports", {{{"port", "http"}}}}});
    }
    nlohmann::json object = {
        {"metadata", {{"name", "policy-" + std::to_string(q)}, {"namespace", ns}}},
        {"spec",
         {{"podSelector", {{"matchLabels", {{"app", AppName(q / kNamespaces % a)}}}}},
          {"policyTypes", {"Ingress", "Egress"}},
          {"ingress",
           {{{"from",
              {{{"podSelector",
                 {{"matchExpressions",
                   {{{"key", "app"}, {"operator", "In"}, {"values", {AppName((q + 1) % a), AppName((q + 2) % a)}}}}}}}},
               {{"namespaceSelector", {{"matchLabels", {{"team", "t" + std::to_string(q % 3)}}}}},
                {"podSelector", {{"matchLabels", {{"app", AppName((q + 5) % a)}}}}}}}},
             {"ports", {{{"port", 80 + port_shift}}, {{"port", 8080}, {"endPort", 8090}}}}}}},
          {"egress", egress}}}};
    auto policy = k8s::ParseNetworkPolicy(object);
    if (!policy.ok()) {
      std::fprintf(stderr, "bad synthetic policy: %s\n", std::string(policy.status().message()).c_str());
      std::abort();
    }
    return *policy;
  }

  // Feeds everything into `engine` in the agent's start-up order: cluster
  // state, identities, then this node's endpoints.
  void Build(PolicyEngine& engine) {
    std::vector<k8s::Namespace> namespaces;
    for (int i = 0; i < kNamespaces; ++i) {
      namespaces.push_back(Namespace(i));
      engine.UpsertNamespace(namespaces.back());
    }
    std::vector<k8s::Pod> pods;
    for (int k = 0; k < shape_.endpoints; ++k) {
      pods.push_back(Pod(k, "pod-" + std::to_string(k)));
      engine.UpsertPod(pods.back());
    }
    for (int q = 0; q < shape_.policies; ++q) engine.UpsertPolicy(Policy(q));
    for (int k = 0; k < shape_.endpoints; ++k) {
      uint32_t id = IdentityOf(engine, pods[k], namespaces[k % kNamespaces]);
      engine.UpsertEndpoint(LocalEndpoint{{"c-" + std::to_string(k), "eth0"}, id, pods[k].namespace_name,
                                          pods[k].name, {IpFor(k)}});
    }
  }

  uint32_t IdentityOf(PolicyEngine& engine, const k8s::Pod& pod, const k8s::Namespace& ns) {
    identity::LabelSet labels = LabelsOf(pod, ns);
    auto [it, inserted] = identities_.try_emplace(labels.Key(), next_identity_);
    if (inserted) {
      ++next_identity_;
      engine.UpsertIdentity(it->second, labels);
    }
    return it->second;
  }

  size_t identities() const { return identities_.size(); }
  uint32_t NewIdentityNumber() { return next_identity_++; }

 private:
  ClusterShape shape_;
  identity::LabelFilter filter_ = identity::LabelFilter::Default();
  std::map<std::string, uint32_t> identities_;
  uint32_t next_identity_ = 256;
};

ClusterShape ShapeOf(const benchmark::State& state) {
  return ClusterShape{static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                      static_cast<int>(state.range(2))};
}

void SetShapeCounters(benchmark::State& state, const PolicyEngine& engine) {
  EngineStats stats = engine.Stats();
  state.counters["endpoints"] = static_cast<double>(stats.endpoints);
  state.counters["identities"] = static_cast<double>(stats.identities);
  state.counters["policies"] = static_cast<double>(stats.policies);
  state.counters["selectors"] = static_cast<double>(stats.selectors);
  state.counters["cidr_ids"] = static_cast<double>(stats.cidr_identities);
  state.counters["rules"] = static_cast<double>(stats.rules);
}

// Compiling a whole node from nothing (agent start-up: cluster state,
// identity snapshot and endpoints in one batch), and the heap the compiled
// state then holds.
void BM_CompileNode(benchmark::State& state) {
  ClusterShape shape = ShapeOf(state);
  int64_t heap = 0;
  for (auto _ : state) {
    state.PauseTiming();
    int64_t before = live_heap_bytes.load();
    auto engine = std::make_unique<PolicyEngine>();
    SyntheticCluster cluster(shape);
    state.ResumeTiming();
    // The agent's start-up: the snapshot is one batch.
    engine->BeginBatch();
    cluster.Build(*engine);
    engine->EndBatch();
    state.PauseTiming();
    engine->TakeDirtyEndpoints();
    engine->TakePrefixChanges();
    // The cluster helper's own maps are small next to the engine's.
    heap = live_heap_bytes.load() - before;
    SetShapeCounters(state, *engine);
    engine.reset();
    state.ResumeTiming();
  }
  state.counters["heap_MiB"] = static_cast<double>(heap) / (1 << 20);
  state.counters["heap_KiB_per_endpoint"] = static_cast<double>(heap) / 1024 / shape.endpoints;
}

// A new pod whose labels already have an identity: its own rule set is
// computed, no other endpoint is recomputed or dirtied.
void BM_AddPodWithKnownLabels(benchmark::State& state) {
  ClusterShape shape = ShapeOf(state);
  PolicyEngine engine;
  SyntheticCluster cluster(shape);
  engine.BeginBatch();
  cluster.Build(engine);
  engine.EndBatch();
  engine.TakeDirtyEndpoints();
  k8s::Namespace ns = cluster.Namespace(0);
  uint64_t dirtied_others = 0, computations = 0, adds = 0;
  int n = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // Same namespace and app as endpoint 0: an existing identity.
    k8s::Pod pod = cluster.Pod(0, "new-pod-" + std::to_string(n));
    pod.pod_ips = {"10.250.0.1"};
    EndpointKey key{"new-" + std::to_string(n++), "eth0"};
    uint32_t id = cluster.IdentityOf(engine, pod, ns);
    uint64_t computations_before = engine.Stats().endpoint_computations;
    state.ResumeTiming();
    engine.UpsertPod(pod);
    engine.UpsertEndpoint(LocalEndpoint{key, id, pod.namespace_name, pod.name, {"10.250.0.1"}});
    std::vector<EndpointKey> dirty = engine.TakeDirtyEndpoints();
    state.PauseTiming();
    computations += engine.Stats().endpoint_computations - computations_before;
    for (const EndpointKey& d : dirty) dirtied_others += d == key ? 0 : 1;
    ++adds;
    engine.DeleteEndpoint(key);
    engine.DeletePod(pod.namespace_name, pod.name);
    engine.TakeDirtyEndpoints();
    state.ResumeTiming();
  }
  if (dirtied_others != 0) {
    // The property the design rests on; fail the run (and the CTest smoke).
    std::fprintf(stderr, "a pod with known labels dirtied %llu other endpoints\n",
                 static_cast<unsigned long long>(dirtied_others));
    std::exit(1);
  }
  SetShapeCounters(state, engine);
  state.counters["other_endpoints_dirtied"] = static_cast<double>(dirtied_others);
  state.counters["computations_per_add"] = static_cast<double>(computations) / static_cast<double>(adds);
}

// One policy edit (a port changes): the endpoints it selects are recomputed
// and pushed; nothing else.
void BM_UpdatePolicy(benchmark::State& state) {
  ClusterShape shape = ShapeOf(state);
  PolicyEngine engine;
  SyntheticCluster cluster(shape);
  engine.BeginBatch();
  cluster.Build(engine);
  engine.EndBatch();
  engine.TakeDirtyEndpoints();
  uint64_t dirtied = 0, edits = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // Round r over all policies moves their ports by 1 + r % 2: every edit
    // changes the policy it edits.
    int shift = 1 + static_cast<int>(edits / shape.policies) % 2;
    k8s::NetworkPolicy edited = cluster.Policy(static_cast<int>(edits % shape.policies), shift);
    state.ResumeTiming();
    engine.UpsertPolicy(edited);
    dirtied += engine.TakeDirtyEndpoints().size();
    ++edits;
  }
  SetShapeCounters(state, engine);
  state.counters["dirtied_per_edit"] = static_cast<double>(dirtied) / static_cast<double>(edits);
}

// A new identity (a pod with new labels somewhere in the cluster): one pass
// over the selector cache, then only the endpoints whose peers it matches.
void BM_NewIdentity(benchmark::State& state) {
  ClusterShape shape = ShapeOf(state);
  PolicyEngine engine;
  SyntheticCluster cluster(shape);
  engine.BeginBatch();
  cluster.Build(engine);
  engine.EndBatch();
  engine.TakeDirtyEndpoints();
  k8s::Namespace ns = cluster.Namespace(1);
  uint64_t dirtied = 0, added = 0;
  for (auto _ : state) {
    state.PauseTiming();
    k8s::Pod pod = cluster.Pod(1, "x");
    pod.labels["version"] = "v" + std::to_string(added);
    identity::LabelSet labels = cluster.LabelsOf(pod, ns);
    uint32_t id = cluster.NewIdentityNumber();
    state.ResumeTiming();
    engine.UpsertIdentity(id, labels);
    dirtied += engine.TakeDirtyEndpoints().size();
    state.PauseTiming();
    engine.DeleteIdentity(id);
    engine.TakeDirtyEndpoints();
    ++added;
    state.ResumeTiming();
  }
  SetShapeCounters(state, engine);
  state.counters["dirtied_per_identity"] = static_cast<double>(dirtied) / static_cast<double>(added);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int endpoints : {100, 1000}) {
    for (int policies : {50, 500}) {
      for (int apps : {10, 100}) b->Args({endpoints, policies, apps});
    }
  }
  b->ArgNames({"endpoints", "policies", "apps"});
}

BENCHMARK(BM_CompileNode)->Apply(Shapes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AddPodWithKnownLabels)->Apply(Shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_UpdatePolicy)->Apply(Shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_NewIdentity)->Apply(Shapes)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace ebpfcni::policy

BENCHMARK_MAIN();
