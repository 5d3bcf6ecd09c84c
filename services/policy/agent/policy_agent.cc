#include "services/policy/agent/policy_agent.h"

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "common/grpc/channel.h"
#include "common/grpc/status.h"
#include "services/identity/reserved_identities.h"
#include "services/policy/agent/backoff.h"
#include "services/policy/agent/proto_conversions.h"
#include "services/policy/k8s/objects.h"

namespace ebpfcni::policy {
namespace {

std::string OwnerEndpoint(const EndpointKey& key) { return absl::StrCat(key.container_id, "/", key.interface_name); }

LocalEndpoint LocalEndpointFromProto(const datapath::v1::Endpoint& endpoint) {
  LocalEndpoint local;
  local.key = FromProtoKey(endpoint.key());
  local.identity = endpoint.identity();
  local.pod_namespace = endpoint.pod_namespace().empty() ? k8s::kDefaultNamespace : endpoint.pod_namespace();
  local.pod_name = endpoint.pod_name().empty() ? endpoint.key().container_id() : endpoint.pod_name();
  local.addresses.assign(endpoint.addresses().begin(), endpoint.addresses().end());
  return local;
}

// Scopes PolicyEngine::BeginBatch/EndBatch: a snapshot or a cluster-state
// batch recompiles each endpoint it affects once, not once per object.
class EngineBatch {
 public:
  explicit EngineBatch(PolicyEngine& engine) : engine_(engine) { engine_.BeginBatch(); }
  ~EngineBatch() { engine_.EndBatch(); }
  EngineBatch(const EngineBatch&) = delete;
  EngineBatch& operator=(const EngineBatch&) = delete;

 private:
  PolicyEngine& engine_;
};

}  // namespace

PolicyAgent::PolicyAgent(PolicyAgentOptions options, std::unique_ptr<ClusterStateSource> source)
    : options_(std::move(options)),
      source_(std::move(source)),
      identity_(identity::v1::IdentityService::NewStub(options_.identity_channel)),
      datapath_(datapath::v1::DatapathService::NewStub(options_.datapath_channel)),
      engine_(options_.label_filter) {
  identity_watcher_ = std::make_unique<IdentityWatcher>(
      options_.identity_channel,
      IdentityWatcher::Callbacks{
          .on_snapshot = [this](std::vector<IdentityEntry> all) { OnIdentitySnapshot(std::move(all)); },
          .on_upsert = [this](IdentityEntry entry) { OnIdentityUpsert(std::move(entry)); },
          .on_delete = [this](uint32_t id) { OnIdentityDelete(id); },
      });
  endpoint_watcher_ = std::make_unique<EndpointWatcher>(
      options_.datapath_channel,
      EndpointWatcher::Callbacks{
          .on_snapshot = [this](std::vector<datapath::v1::Endpoint> all) { OnEndpointSnapshot(std::move(all)); },
          .on_upsert = [this](const datapath::v1::Endpoint& endpoint) { OnEndpointUpsert(endpoint); },
          .on_delete = [this](const datapath::v1::EndpointKey& key) { OnEndpointDelete(key); },
      });
}

PolicyAgent::~PolicyAgent() { Stop(); }

absl::Status PolicyAgent::Start() {
  if (auto status = source_->Start(this); !status.ok()) return status;
  identity_watcher_->Start();
  endpoint_watcher_->Start();
  worker_ = std::thread([this] { WorkerLoop(); });
  started_ = true;
  return absl::OkStatus();
}

void PolicyAgent::Stop() {
  if (!started_) return;
  started_ = false;
  source_->Stop();
  identity_watcher_->Stop();
  endpoint_watcher_->Stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void PolicyAgent::BumpLocked() {
  ++compiled_generation_;
  work_requested_ = true;
  work_cv_.notify_all();
}

// --- cluster state ------------------------------------------------------------

void PolicyAgent::OnBatch(const std::vector<ResourceEvent>& events) {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::pair<std::string, std::string>> touched_pods;
  std::set<std::string> touched_namespaces;
  {
    // A whole file reload or relist recompiles each affected endpoint once.
    EngineBatch batch(engine_);
    for (const auto& event : events) ApplyEventLocked(event, &touched_pods, &touched_namespaces);
  }
  QueueReresolveLocked(touched_pods, touched_namespaces);
  BumpLocked();
}

void PolicyAgent::ApplyEventLocked(const ResourceEvent& event,
                                   std::set<std::pair<std::string, std::string>>* touched_pods,
                                   std::set<std::string>* touched_namespaces) {
  const auto error_key = std::make_tuple(event.kind, event.namespace_name, event.name);
  auto report = [&](const absl::Status& status) {
    std::string text = absl::StrCat(event.origin.empty() ? "" : event.origin + ": ", ResourceKindName(event.kind),
                                    " ", event.namespace_name.empty() ? "" : event.namespace_name + "/", event.name,
                                    ": ", status.message());
    spdlog::warn("ignoring invalid object (the previous version, if any, stays in force): {}", text);
    object_errors_[error_key] = std::move(text);
  };
  if (event.type == ResourceEvent::Type::kDelete) {
    object_errors_.erase(error_key);
    switch (event.kind) {
      case ResourceKind::kPod:
        engine_.DeletePod(event.namespace_name, event.name);
        break;
      case ResourceKind::kNamespace:
        engine_.DeleteNamespace(event.name);
        touched_namespaces->insert(event.name);
        break;
      case ResourceKind::kNetworkPolicy:
        engine_.DeletePolicy(event.namespace_name, event.name);
        break;
    }
    return;
  }
  switch (event.kind) {
    case ResourceKind::kPod: {
      auto pod = k8s::ParsePod(event.object);
      if (!pod.ok()) return report(pod.status());
      touched_pods->insert({pod->namespace_name, pod->name});
      engine_.UpsertPod(*pod);
      break;
    }
    case ResourceKind::kNamespace: {
      auto ns = k8s::ParseNamespace(event.object);
      if (!ns.ok()) return report(ns.status());
      touched_namespaces->insert(ns->name);
      engine_.UpsertNamespace(*ns);
      break;
    }
    case ResourceKind::kNetworkPolicy: {
      auto policy = k8s::ParseNetworkPolicy(event.object);
      if (!policy.ok()) return report(policy.status());
      engine_.UpsertPolicy(*policy);
      break;
    }
  }
  object_errors_.erase(error_key);
}

void PolicyAgent::OnSynced() {
  // Not source_->Status() here: the source may hold its own lock while it
  // calls us, and GetStatus takes the two locks in the other order.
  spdlog::info("cluster state synced");
  std::lock_guard<std::mutex> lock(mu_);
  source_synced_ = true;
  BumpLocked();
}

ResolveInput PolicyAgent::InputForLocked(const std::string& ns, const std::string& name,
                                         const std::map<std::string, std::string>& fallback_labels) const {
  ResolveInput input;
  if (const k8s::Pod* pod = engine_.FindPod(ns, name)) {
    input.pod_known = true;
    input.pod_labels = pod->labels;
  } else {
    input.pod_labels = fallback_labels;
  }
  if (const k8s::Namespace* namespace_object = engine_.FindNamespace(ns)) {
    input.namespace_labels = namespace_object->labels;
  }
  return input;
}

void PolicyAgent::QueueReresolveLocked(const std::set<std::pair<std::string, std::string>>& pods,
                                       const std::set<std::string>& namespaces) {
  if (pods.empty() && namespaces.empty()) return;
  for (const auto& [key, endpoint] : endpoints_) {
    if (!pods.contains({endpoint.pod_namespace, endpoint.pod_name}) && !namespaces.contains(endpoint.pod_namespace)) {
      continue;
    }
    // A pod deleted from the cluster state before its CNI DEL keeps its
    // identity: falling back to no labels would only churn.
    if (engine_.FindPod(endpoint.pod_namespace, endpoint.pod_name) == nullptr) continue;
    auto resolved = resolved_.find(key);
    if (resolved != resolved_.end() &&
        resolved->second.input == InputForLocked(endpoint.pod_namespace, endpoint.pod_name, {})) {
      continue;
    }
    reresolve_queue_.insert(key);
  }
}

// --- identities -----------------------------------------------------------------

void PolicyAgent::OnIdentitySnapshot(std::vector<IdentityEntry> identities) {
  std::lock_guard<std::mutex> lock(mu_);
  EngineBatch batch(engine_);
  std::set<uint32_t> present;
  for (auto& entry : identities) {
    present.insert(entry.id);
    auto it = identities_.find(entry.id);
    if (it != identities_.end() && it->second == entry.labels) continue;
    engine_.UpsertIdentity(entry.id, entry.labels);
    identities_[entry.id] = std::move(entry.labels);
  }
  for (auto it = identities_.begin(); it != identities_.end();) {
    if (present.contains(it->first)) {
      ++it;
      continue;
    }
    engine_.DeleteIdentity(it->first);
    it = identities_.erase(it);
  }
  if (!identities_synced_) spdlog::info("identities synced ({} identities)", identities_.size());
  identities_synced_ = true;
  BumpLocked();
}

void PolicyAgent::OnIdentityUpsert(IdentityEntry entry) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = identities_.find(entry.id);
  if (it != identities_.end() && it->second == entry.labels) return;
  engine_.UpsertIdentity(entry.id, entry.labels);
  identities_[entry.id] = std::move(entry.labels);
  BumpLocked();
}

void PolicyAgent::OnIdentityDelete(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (identities_.erase(id) == 0) return;
  engine_.DeleteIdentity(id);
  BumpLocked();
}

// --- endpoints ------------------------------------------------------------------

void PolicyAgent::UpsertEndpointLocked(const datapath::v1::Endpoint& proto) {
  LocalEndpoint endpoint = LocalEndpointFromProto(proto);
  auto it = endpoints_.find(endpoint.key);
  const bool is_new = it == endpoints_.end();
  // Our own pushes come back as updates (policy summary changed): those
  // change nothing the compiler looks at and must not bump the generation,
  // or the agent would never look settled.
  if (!is_new && it->second == endpoint) return;
  if (is_new) {
    // Reconcile what the kernel has with the compiled state once per
    // endpoint (after a restart of the agent or the datapath); skipped when
    // the endpoint got exactly this policy from ResolveEndpoint.
    forced_pushes_.insert(endpoint.key);
  }
  auto resolved = resolved_.find(endpoint.key);
  if (resolved != resolved_.end() && endpoint.identity != 0 && resolved->second.identity != endpoint.identity) {
    // Someone else set another identity (e.g. the datapath re-asserting a
    // reference without labels): the cluster state decides it.
    reresolve_queue_.insert(endpoint.key);
  }
  engine_.UpsertEndpoint(endpoint);
  endpoints_[endpoint.key] = std::move(endpoint);
  BumpLocked();
}

void PolicyAgent::OnEndpointSnapshot(std::vector<datapath::v1::Endpoint> endpoints) {
  std::lock_guard<std::mutex> lock(mu_);
  EngineBatch batch(engine_);
  std::set<EndpointKey> present;
  for (const auto& endpoint : endpoints) present.insert(FromProtoKey(endpoint.key()));
  for (auto it = endpoints_.begin(); it != endpoints_.end();) {
    if (present.contains(it->first)) {
      ++it;
      continue;
    }
    engine_.DeleteEndpoint(it->first);
    resolved_.erase(it->first);
    initial_policies_.erase(it->first);
    it = endpoints_.erase(it);
  }
  for (const auto& endpoint : endpoints) UpsertEndpointLocked(endpoint);
  // The datapath may have restarted: its ipcache and policies are
  // re-asserted in full.
  for (const auto& [key, endpoint] : endpoints_) forced_pushes_.insert(key);
  prefix_resync_ = true;
  if (!endpoints_synced_) spdlog::info("endpoints synced ({} endpoints)", endpoints_.size());
  endpoints_synced_ = true;
  BumpLocked();
}

void PolicyAgent::OnEndpointUpsert(const datapath::v1::Endpoint& endpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  UpsertEndpointLocked(endpoint);
}

void PolicyAgent::OnEndpointDelete(const datapath::v1::EndpointKey& proto_key) {
  std::lock_guard<std::mutex> lock(mu_);
  EndpointKey key = FromProtoKey(proto_key);
  if (endpoints_.erase(key) == 0) return;
  engine_.DeleteEndpoint(key);
  resolved_.erase(key);
  initial_policies_.erase(key);
  reresolve_queue_.erase(key);
  forced_pushes_.erase(key);
  pending_pushes_.erase(key);
  BumpLocked();
}

// --- ResolveEndpoint --------------------------------------------------------------

absl::StatusOr<uint32_t> PolicyAgent::ResolveIdentity(const std::string& ns, const std::string& name,
                                                      const ResolveInput& input, const identity::v1::Owner& owner,
                                                      identity::LabelSet* labels) {
  identity::v1::ResolvePodRequest request;
  request.set_pod_namespace(ns);
  request.set_pod_name(name);
  // ResolvePod puts every label it gets under the pod's labels; the
  // namespace's labels go in under the prefix identity::PodLabelSet uses,
  // which makes exactly the label set of the pod and its namespace.
  for (const auto& [key, value] : input.pod_labels) {
    auto* label = request.add_labels();
    label->set_source(identity::kK8sSource);
    label->set_key(key);
    label->set_value(value);
  }
  for (const auto& [key, value] : input.namespace_labels) {
    auto* label = request.add_labels();
    label->set_source(identity::kK8sSource);
    label->set_key(absl::StrCat(identity::kNamespaceLabelPrefix, key));
    label->set_value(value);
  }
  *request.mutable_owner() = owner;
  grpc::ClientContext context;
  SetDeadline(context, options_.call_timeout);
  identity::v1::ResolvePodResponse response;
  grpc::Status status = identity_->ResolvePod(&context, request, &response);
  if (!status.ok()) {
    absl::Status inner = FromGrpcStatus(status);
    return absl::Status(inner.code(), absl::StrCat("identity service ResolvePod(", ns, "/", name,
                                                   "): ", inner.message()));
  }
  *labels = LabelSetFromProto(response.identity().labels());
  return response.identity().id();
}

absl::StatusOr<v1::ResolveEndpointResponse> PolicyAgent::ResolveEndpoint(const v1::ResolveEndpointRequest& request) {
  if (request.key().container_id().empty() || request.key().interface_name().empty()) {
    return absl::InvalidArgumentError("key.container_id and key.interface_name are required (the CNI attachment)");
  }
  EndpointKey key = FromProtoKey(request.key());
  const std::string ns = request.pod_namespace().empty() ? k8s::kDefaultNamespace : request.pod_namespace();
  const std::string name = request.pod_name().empty() ? key.container_id : request.pod_name();
  identity::v1::Owner owner = request.owner();
  if (owner.node().empty()) owner.set_node(options_.node_name);
  if (owner.endpoint().empty()) owner.set_endpoint(OwnerEndpoint(key));

  std::map<std::string, std::string> fallback;
  for (const auto& label : request.fallback_labels()) fallback[label.key()] = label.value();
  ResolveInput input;
  {
    std::lock_guard<std::mutex> lock(mu_);
    input = InputForLocked(ns, name, fallback);
  }
  identity::LabelSet labels;
  auto id = ResolveIdentity(ns, name, input, owner, &labels);
  if (!id.ok()) return id.status();

  v1::ResolveEndpointResponse response;
  std::lock_guard<std::mutex> lock(mu_);
  // The watch delivers a new identity a moment later; the compiler needs its
  // labels now to pick the policies that select this pod.
  if (auto it = identities_.find(*id); it == identities_.end() || it->second != labels) {
    engine_.UpsertIdentity(*id, labels);
    identities_[*id] = labels;
    BumpLocked();
  }
  CompiledEndpointPolicy policy = engine_.ComputeFor(*id, ns, name);
  *response.mutable_policy() = policy.ToProto();
  initial_policies_[key] = std::move(policy);
  resolved_[key] = Resolved{input, *id};
  reresolve_queue_.erase(key);
  auto* identity = response.mutable_identity();
  identity->set_id(*id);
  for (const auto& label : labels.labels()) {
    auto* out = identity->add_labels();
    out->set_source(label.source);
    out->set_key(label.key);
    out->set_value(label.value);
  }
  response.set_pod_known(input.pod_known);
  response.set_generation(compiled_generation_);
  spdlog::info("resolved endpoint {} (pod {}/{}{}) to identity {}", key.ToString(), ns, name,
               input.pod_known ? "" : ", not in the cluster state: fallback labels", *id);
  return response;
}

// --- worker -----------------------------------------------------------------------

void PolicyAgent::WorkerLoop() {
  Backoff backoff(std::chrono::milliseconds(50), std::chrono::seconds(5));
  std::chrono::milliseconds retry_in{0};
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto wake = [this] { return stopping_ || work_requested_; };
      if (retry_in.count() > 0) {
        work_cv_.wait_for(lock, retry_in, wake);
      } else {
        work_cv_.wait(lock, wake);
      }
      if (stopping_) return;
      work_requested_ = false;
      if (!ReadyLocked()) continue;
      if (!reconciled_identities_) {
        // First time everything is known: endpoints created before this
        // agent ran (or while it was down) get the identity the cluster
        // state implies.
        reconciled_identities_ = true;
        for (const auto& [key, endpoint] : endpoints_) {
          if (!resolved_.contains(key) && engine_.FindPod(endpoint.pod_namespace, endpoint.pod_name) != nullptr) {
            reresolve_queue_.insert(key);
          }
        }
      }
    }
    bool resolved_all = ReresolvePending();
    if (WorkOnce() && resolved_all) {
      backoff.Reset();
      retry_in = std::chrono::milliseconds(0);
    } else {
      retry_in = backoff.Next();
    }
  }
}

bool PolicyAgent::ReresolvePending() {
  struct Job {
    EndpointKey key;
    std::string ns, name;
    ResolveInput input;
    uint32_t current_identity;
  };
  std::vector<Job> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& key : reresolve_queue_) {
      auto it = endpoints_.find(key);
      if (it == endpoints_.end()) continue;
      jobs.push_back({key, it->second.pod_namespace, it->second.pod_name,
                      InputForLocked(it->second.pod_namespace, it->second.pod_name, {}), it->second.identity});
    }
    reresolve_queue_.clear();
  }
  for (const auto& job : jobs) {
    identity::v1::Owner owner;
    owner.set_node(options_.node_name);
    owner.set_endpoint(OwnerEndpoint(job.key));
    identity::LabelSet labels;
    auto id = ResolveIdentity(job.ns, job.name, job.input, owner, &labels);
    if (!id.ok()) {
      spdlog::warn("cannot re-resolve the identity of {} ({}/{}): {}; will retry", job.key.ToString(), job.ns,
                   job.name, id.status().ToString());
      std::lock_guard<std::mutex> lock(mu_);
      reresolve_queue_.insert(job.key);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = identities_.find(*id); it == identities_.end() || it->second != labels) {
        engine_.UpsertIdentity(*id, labels);
        identities_[*id] = labels;
        BumpLocked();
      }
      // Recorded before SetEndpointIdentity: the watch reports the change
      // right away and must see it as ours, not as someone else's.
      resolved_[job.key] = Resolved{job.input, *id};
    }
    if (*id != job.current_identity) {
      datapath::v1::SetEndpointIdentityRequest request;
      *request.mutable_key() = ToProtoKey(job.key);
      request.set_identity(*id);
      grpc::ClientContext context;
      SetDeadline(context, options_.call_timeout);
      datapath::v1::SetEndpointIdentityResponse response;
      grpc::Status status = datapath_->SetEndpointIdentity(&context, request, &response);
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) continue;  // endpoint gone meanwhile
      if (!status.ok()) {
        spdlog::warn("cannot set identity {} on {}: {}; will retry", *id, job.key.ToString(), status.error_message());
        std::lock_guard<std::mutex> lock(mu_);
        reresolve_queue_.insert(job.key);
        continue;
      }
      spdlog::info("endpoint {} ({}/{}): labels changed, identity {} -> {}", job.key.ToString(), job.ns, job.name,
                   job.current_identity, *id);
      if (job.current_identity >= identity::kFirstAllocatableIdentity) {
        identity::v1::ReleaseIdentityRequest release;
        release.set_id(job.current_identity);
        *release.mutable_owner() = owner;
        grpc::ClientContext release_context;
        SetDeadline(release_context, options_.call_timeout);
        identity::v1::ReleaseIdentityResponse released;
        if (auto s = identity_->ReleaseIdentity(&release_context, release, &released); !s.ok()) {
          spdlog::warn("cannot release identity {} of {}: {}", job.current_identity, job.key.ToString(),
                       s.error_message());
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      // The watch reports the new identity too; applying it now keeps the
      // compiled state from lagging behind the kernel.
      if (auto it = endpoints_.find(job.key); it != endpoints_.end() && it->second.identity != *id) {
        it->second.identity = *id;
        engine_.UpsertEndpoint(it->second);
        BumpLocked();
      }
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  return reresolve_queue_.empty();
}

bool PolicyAgent::WorkOnce() {
  struct Push {
    EndpointKey key;
    datapath::v1::EndpointPolicy policy;
  };
  std::vector<Push> pushes;
  std::vector<std::pair<IpPrefix, uint32_t>> upserts;
  std::vector<IpPrefix> deletes;
  bool resync = false;
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation = compiled_generation_;
    for (auto& key : engine_.TakeDirtyEndpoints()) pending_pushes_.insert(std::move(key));
    pending_pushes_.insert(forced_pushes_.begin(), forced_pushes_.end());
    forced_pushes_.clear();
    PrefixChanges changes = engine_.TakePrefixChanges();
    for (auto& [prefix, id] : changes.upserts) {
      pending_prefix_deletes_.erase(prefix);
      pending_prefix_upserts_[prefix] = id;
    }
    for (auto& prefix : changes.deletes) {
      pending_prefix_upserts_.erase(prefix);
      pending_prefix_deletes_.insert(prefix);
    }
    if (prefix_resync_) {
      resync = true;
      prefix_resync_ = false;
      for (auto& [prefix, id] : engine_.PrefixIdentities()) pending_prefix_upserts_[prefix] = id;
    }
    upserts.assign(pending_prefix_upserts_.begin(), pending_prefix_upserts_.end());
    deletes.assign(pending_prefix_deletes_.begin(), pending_prefix_deletes_.end());
    for (auto it = pending_pushes_.begin(); it != pending_pushes_.end();) {
      const CompiledEndpointPolicy* policy = engine_.PolicyOf(*it);
      auto initial = initial_policies_.find(*it);
      if (policy == nullptr || (initial != initial_policies_.end() && initial->second == *policy)) {
        // Endpoint gone, or it already starts with exactly this policy.
        if (initial != initial_policies_.end()) initial_policies_.erase(initial);
        it = pending_pushes_.erase(it);
        continue;
      }
      if (initial != initial_policies_.end()) initial_policies_.erase(initial);
      pushes.push_back({*it, policy->ToProto()});
      ++it;
    }
  }

  bool all_ok = true;
  // CIDR identities first, so no rule refers to a prefix the ipcache does
  // not know yet; deletions last, once no rule refers to them any more.
  if (resync) {
    // Entries of CIDR identities a previous run installed and the current
    // policies no longer need.
    grpc::ClientContext context;
    SetDeadline(context, options_.call_timeout);
    datapath::v1::ListPrefixIdentitiesResponse listed;
    grpc::Status status = datapath_->ListPrefixIdentities(&context, {}, &listed);
    if (status.ok()) {
      std::set<IpPrefix> wanted;
      for (const auto& [prefix, id] : upserts) wanted.insert(prefix);
      for (const auto& entry : listed.entries()) {
        if (entry.identity() < kFirstCidrIdentity) continue;
        auto prefix = IpPrefix::Parse(entry.prefix(), /*allow_bare_address=*/true);
        if (prefix.ok() && !wanted.contains(*prefix)) deletes.push_back(*prefix);
      }
    } else {
      spdlog::warn("cannot list the datapath's prefix identities: {}", status.error_message());
    }
  }
  if (!upserts.empty()) {
    datapath::v1::UpsertPrefixIdentityRequest request;
    for (const auto& [prefix, id] : upserts) {
      auto* entry = request.add_entries();
      entry->set_prefix(prefix.ToString());
      entry->set_identity(id);
    }
    grpc::ClientContext context;
    SetDeadline(context, options_.call_timeout);
    datapath::v1::UpsertPrefixIdentityResponse response;
    grpc::Status status = datapath_->UpsertPrefixIdentity(&context, request, &response);
    std::lock_guard<std::mutex> lock(mu_);
    if (status.ok()) {
      prefix_identity_changes_ += upserts.size();
      for (const auto& [prefix, id] : upserts) {
        if (auto it = pending_prefix_upserts_.find(prefix); it != pending_prefix_upserts_.end() && it->second == id) {
          pending_prefix_upserts_.erase(it);
        }
      }
    } else {
      spdlog::warn("UpsertPrefixIdentity ({} prefixes) failed: {}; will retry", upserts.size(),
                   status.error_message());
      all_ok = false;
    }
  }

  // Endpoint policies go in batches: the datapath swaps a whole batch with
  // one RCU grace period (~15 ms here) instead of one per endpoint, so a
  // policy selecting 1000 pods is one step, not 15 s.
  uint32_t failed = 0;
  auto record_result = [&](const EndpointKey& key, grpc::StatusCode code, const std::string& message) {
    // Caller holds mu_.
    if (code == grpc::StatusCode::OK || code == grpc::StatusCode::NOT_FOUND) {
      // NOT_FOUND: the endpoint is gone; the watch will say so.
      if (code == grpc::StatusCode::OK) ++endpoint_policy_pushes_;
      pending_pushes_.erase(key);
    } else {
      ++failed;
      all_ok = false;
      spdlog::warn("ReplaceEndpointPolicy({}) failed: {}; will retry", key.ToString(), message);
    }
  };
  constexpr size_t kMaxBatch = 512;
  for (size_t begin = 0; begin < pushes.size(); begin += kMaxBatch) {
    const size_t end = std::min(pushes.size(), begin + kMaxBatch);
    if (batch_replace_supported_) {
      datapath::v1::ReplaceEndpointPoliciesRequest request;
      for (size_t i = begin; i < end; ++i) {
        auto* item = request.add_items();
        *item->mutable_key() = ToProtoKey(pushes[i].key);
        *item->mutable_policy() = pushes[i].policy;
      }
      grpc::ClientContext context;
      SetDeadline(context, options_.call_timeout);
      datapath::v1::ReplaceEndpointPoliciesResponse response;
      grpc::Status status = datapath_->ReplaceEndpointPolicies(&context, request, &response);
      if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        spdlog::info("the datapath service has no ReplaceEndpointPolicies; pushing one endpoint at a time");
        batch_replace_supported_ = false;
      } else {
        std::lock_guard<std::mutex> lock(mu_);
        if (!status.ok()) {
          for (size_t i = begin; i < end; ++i) record_result(pushes[i].key, status.error_code(), status.error_message());
          continue;
        }
        for (size_t i = begin; i < end; ++i) {
          const int index = static_cast<int>(i - begin);
          if (index >= response.results_size()) {
            record_result(pushes[i].key, grpc::StatusCode::INTERNAL, "the datapath returned fewer results than items");
            continue;
          }
          const auto& result = response.results(index);
          record_result(pushes[i].key, static_cast<grpc::StatusCode>(result.code()), result.message());
        }
        continue;
      }
    }
    for (size_t i = begin; i < end; ++i) {
      datapath::v1::ReplaceEndpointPolicyRequest request;
      *request.mutable_key() = ToProtoKey(pushes[i].key);
      *request.mutable_policy() = pushes[i].policy;
      grpc::ClientContext context;
      SetDeadline(context, options_.call_timeout);
      datapath::v1::ReplaceEndpointPolicyResponse response;
      grpc::Status status = datapath_->ReplaceEndpointPolicy(&context, request, &response);
      std::lock_guard<std::mutex> lock(mu_);
      record_result(pushes[i].key, status.error_code(), status.error_message());
    }
  }

  if (!deletes.empty() && all_ok) {
    datapath::v1::DeletePrefixIdentityRequest request;
    for (const auto& prefix : deletes) request.add_prefixes(prefix.ToString());
    grpc::ClientContext context;
    SetDeadline(context, options_.call_timeout);
    datapath::v1::DeletePrefixIdentityResponse response;
    grpc::Status status = datapath_->DeletePrefixIdentity(&context, request, &response);
    std::lock_guard<std::mutex> lock(mu_);
    if (status.ok()) {
      prefix_identity_changes_ += response.deleted();
      for (const auto& prefix : deletes) pending_prefix_deletes_.erase(prefix);
    } else {
      spdlog::warn("DeletePrefixIdentity ({} prefixes) failed: {}; will retry", deletes.size(),
                   status.error_message());
      all_ok = false;
    }
  }

  std::lock_guard<std::mutex> lock(mu_);
  failing_endpoints_ = failed;
  if (all_ok && reresolve_queue_.empty() && pending_pushes_.empty() && pending_prefix_upserts_.empty() &&
      pending_prefix_deletes_.empty()) {
    applied_generation_ = std::max(applied_generation_, generation);
  }
  return all_ok;
}

}  // namespace ebpfcni::policy
