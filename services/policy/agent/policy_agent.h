#pragma once
// PolicyAgent: the policy agent's state and threads, between the cluster
// state, the identity service and the datapath service.
//
//   source thread ──OnBatch──┐
//   identity watch ──────────┼──> PolicyEngine (one mutex) ──dirty──> worker ──> datapath
//   endpoint watch ──────────┘                                        (ReplaceEndpointPolicy,
//                                                                      prefix identities,
//                                                                      identity re-resolution)
//
// compiled_generation counts processed changes (a batch, an identity change,
// an endpoint change); applied_generation is the compiled generation at
// which the worker last had nothing dirty and nothing failing, so
// "applied == compiled" means the kernel holds what the cluster state says.
// Nothing is pushed before the cluster state, the identities and the
// endpoints have all been seen once: a policy compiled from half the
// identities would deny legitimate peers.
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/statusor.h>
#include <grpcpp/channel.h>

#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "ebpfcni/identity/v1/identity.grpc.pb.h"
#include "ebpfcni/policy/v1/policy.grpc.pb.h"
#include "services/policy/agent/endpoint_watcher.h"
#include "services/policy/agent/identity_watcher.h"
#include "services/policy/clusterstate/cluster_state_source.h"
#include "services/policy/compiler/policy_engine.h"

namespace ebpfcni::policy {

struct PolicyAgentOptions {
  // Owner.node of the identity references the agent takes (the CNI binary
  // uses the host name too).
  std::string node_name;
  std::shared_ptr<grpc::Channel> identity_channel;
  std::shared_ptr<grpc::Channel> datapath_channel;
  // Deadline of every unary call to the identity and datapath services.
  std::chrono::milliseconds call_timeout{5000};
  // Must be the identity service's (--label_filter there): the compiler maps
  // Pod objects to identity keys with it.
  identity::LabelFilter label_filter = identity::LabelFilter::Default();
};

// What a pod's identity was (or would be) resolved from: equal inputs give
// equal identities, so a change of the Pod's or Namespace's labels is
// noticed by comparing inputs.
struct ResolveInput {
  bool pod_known = false;
  std::map<std::string, std::string> pod_labels;
  std::map<std::string, std::string> namespace_labels;
  bool operator==(const ResolveInput&) const = default;
};

class PolicyAgent final : public ClusterStateListener {
 public:
  PolicyAgent(PolicyAgentOptions options, std::unique_ptr<ClusterStateSource> source);
  ~PolicyAgent() override;

  // Starts the source, both watches and the worker.
  absl::Status Start();
  void Stop();  // idempotent

  // ClusterStateListener (the source's thread).
  void OnBatch(const std::vector<ResourceEvent>& events) override;
  void OnSynced() override;

  // --- PolicyService -------------------------------------------------------
  absl::StatusOr<v1::ResolveEndpointResponse> ResolveEndpoint(const v1::ResolveEndpointRequest& request);
  absl::StatusOr<v1::TracePolicyResponse> TracePolicy(const v1::TracePolicyRequest& request);
  absl::StatusOr<v1::ListPoliciesResponse> ListPolicies(const v1::ListPoliciesRequest& request);
  absl::StatusOr<v1::DescribeRuleResponse> DescribeRule(uint32_t rule_id);
  v1::GetStatusResponse GetStatus();
  absl::StatusOr<v1::VerifyDatapathResponse> VerifyDatapath();
  // The datapath event with its rule and both pods named.
  v1::PolicyEvent EnrichEvent(const datapath::v1::Event& event);

  datapath::v1::DatapathService::Stub& datapath() { return *datapath_; }

 private:
  struct PushState;

  // Identity and endpoint watch callbacks.
  void OnIdentitySnapshot(std::vector<IdentityEntry> identities);
  void OnIdentityUpsert(IdentityEntry entry);
  void OnIdentityDelete(uint32_t id);
  void OnEndpointSnapshot(std::vector<datapath::v1::Endpoint> endpoints);
  void OnEndpointUpsert(const datapath::v1::Endpoint& endpoint);
  void OnEndpointDelete(const datapath::v1::EndpointKey& key);

  // With mu_ held.
  void ApplyEventLocked(const ResourceEvent& event, std::set<std::pair<std::string, std::string>>* touched_pods,
                        std::set<std::string>* touched_namespaces);
  void UpsertEndpointLocked(const datapath::v1::Endpoint& endpoint);
  void BumpLocked();  // one processed change: generation + wake the worker
  bool ReadyLocked() const { return source_synced_ && identities_synced_ && endpoints_synced_; }
  ResolveInput InputForLocked(const std::string& ns, const std::string& name,
                              const std::map<std::string, std::string>& fallback_labels) const;
  // Queues local endpoints of the pods / namespaces whose labels changed.
  void QueueReresolveLocked(const std::set<std::pair<std::string, std::string>>& pods,
                            const std::set<std::string>& namespaces);
  std::optional<v1::RuleRef> RuleRefLocked(uint32_t rule_id) const;
  std::optional<v1::PodRef> PodOfAddressLocked(const std::string& address) const;

  // Worker.
  void WorkerLoop();
  // One round; true when everything it took succeeded.
  bool WorkOnce();
  // False when some endpoint could not be re-resolved (retried later).
  bool ReresolvePending();
  absl::StatusOr<uint32_t> ResolveIdentity(const std::string& ns, const std::string& name, const ResolveInput& input,
                                           const identity::v1::Owner& owner, identity::LabelSet* labels);

  PolicyAgentOptions options_;
  std::unique_ptr<ClusterStateSource> source_;
  std::unique_ptr<identity::v1::IdentityService::Stub> identity_;
  std::unique_ptr<datapath::v1::DatapathService::Stub> datapath_;
  std::unique_ptr<IdentityWatcher> identity_watcher_;
  std::unique_ptr<EndpointWatcher> endpoint_watcher_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  PolicyEngine engine_;
  bool source_synced_ = false, identities_synced_ = false, endpoints_synced_ = false;
  bool stopping_ = false;
  bool work_requested_ = false;
  uint64_t compiled_generation_ = 0;
  uint64_t applied_generation_ = 0;
  uint64_t endpoint_policy_pushes_ = 0;
  uint64_t prefix_identity_changes_ = 0;
  // False once the datapath answered UNIMPLEMENTED to ReplaceEndpointPolicies
  // (an older datapath service). Only the worker thread touches it.
  bool batch_replace_supported_ = true;
  std::map<uint32_t, identity::LabelSet> identities_;
  std::map<EndpointKey, LocalEndpoint> endpoints_;  // as the datapath reported them
  // Policies handed to the CNI by ResolveEndpoint: the endpoint starts with
  // it, so it is not pushed again when it already matches.
  std::map<EndpointKey, CompiledEndpointPolicy> initial_policies_;
  struct Resolved {
    ResolveInput input;
    uint32_t identity = 0;
  };
  std::map<EndpointKey, Resolved> resolved_;
  std::set<EndpointKey> reresolve_queue_;
  bool reconciled_identities_ = false;
  // Worker-owned push state (under mu_).
  std::set<EndpointKey> forced_pushes_;     // pushed even if the engine did not dirty them
  std::set<EndpointKey> pending_pushes_;    // taken from the engine, not yet in the kernel
  std::map<IpPrefix, uint32_t> pending_prefix_upserts_;
  std::set<IpPrefix> pending_prefix_deletes_;
  bool prefix_resync_ = false;              // reinstall every CIDR identity (datapath reconnected)
  uint32_t failing_endpoints_ = 0;
  // Per-object parse problems ("origin: message"), reported by GetStatus.
  std::map<std::tuple<ResourceKind, std::string, std::string>, std::string> object_errors_;

  std::thread worker_;
  bool started_ = false;
};

}  // namespace ebpfcni::policy
