// PolicyAgent against the real identity service (in process, SQLite in a
// temporary directory) and an in-memory datapath service that records what
// the agent asks of it. The kernel side is covered by agent_e2e_test.sh;
// this test pins down the agent's own logic: what it pushes (and does not),
// identity re-resolution, generations, trace and the errors it returns.
#include "services/policy/agent/policy_agent.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include "services/identity/identity_service.h"
#include "services/identity/sqlite_identity_store.h"
#include "services/policy/agent/proto_conversions.h"

namespace ebpfcni::policy {
namespace {

namespace dp = datapath::v1;

// The datapath service's endpoint/policy bookkeeping, in memory.
class FakeDatapath final : public dp::DatapathService::Service {
 public:
  void AddEndpoint(const std::string& container_id, const std::string& ns, const std::string& name,
                   const std::string& address, uint32_t identity, const dp::EndpointPolicy* policy) {
    std::lock_guard<std::mutex> lock(mu_);
    dp::Endpoint endpoint;
    endpoint.mutable_key()->set_container_id(container_id);
    endpoint.mutable_key()->set_interface_name("eth0");
    endpoint.set_pod_namespace(ns);
    endpoint.set_pod_name(name);
    endpoint.add_addresses(address);
    endpoint.set_identity(identity);
    endpoints_[container_id] = endpoint;
    if (policy != nullptr) policies_[container_id] = *policy;
    LogLocked(dp::ENDPOINT_CHANGE_CREATED, endpoint);
  }
  void RemoveEndpoint(const std::string& container_id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = endpoints_.find(container_id);
    if (it == endpoints_.end()) return;
    LogLocked(dp::ENDPOINT_CHANGE_DELETED, it->second);
    endpoints_.erase(it);
    policies_.erase(container_id);
  }
  int replace_calls(const std::string& container_id) {
    std::lock_guard<std::mutex> lock(mu_);
    return replace_calls_[container_id];
  }
  int total_replace_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    int total = 0;
    for (const auto& [id, n] : replace_calls_) total += n;
    return total;
  }
  uint32_t identity_of(const std::string& container_id) {
    std::lock_guard<std::mutex> lock(mu_);
    return endpoints_.at(container_id).identity();
  }
  void Shutdown() {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    changed_.notify_all();
  }

  grpc::Status WatchEndpoints(grpc::ServerContext* context, const dp::WatchEndpointsRequest*,
                              grpc::ServerWriter<dp::WatchEndpointsResponse>* writer) override {
    std::unique_lock<std::mutex> lock(mu_);
    for (const auto& [id, endpoint] : endpoints_) {
      dp::WatchEndpointsResponse event;
      event.set_change(dp::ENDPOINT_CHANGE_SNAPSHOT);
      *event.mutable_endpoint() = endpoint;
      writer->Write(event);
    }
    dp::WatchEndpointsResponse done;
    done.set_change(dp::ENDPOINT_CHANGE_SNAPSHOT_DONE);
    writer->Write(done);
    size_t next = log_.size();
    while (!shutdown_ && !context->IsCancelled()) {
      changed_.wait_for(lock, std::chrono::milliseconds(50));
      for (; next < log_.size(); ++next) {
        if (!writer->Write(log_[next])) return grpc::Status::OK;
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status ReplaceEndpointPolicy(grpc::ServerContext*, const dp::ReplaceEndpointPolicyRequest* request,
                                     dp::ReplaceEndpointPolicyResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = endpoints_.find(request->key().container_id());
    if (it == endpoints_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such endpoint");
    ++replace_calls_[request->key().container_id()];
    policies_[request->key().container_id()] = request->policy();
    LogLocked(dp::ENDPOINT_CHANGE_UPDATED, it->second);
    return grpc::Status::OK;
  }
  // The batch the agent sends: counted per endpoint like single calls, and
  // per batch so a test can see one call carried several endpoints.
  grpc::Status ReplaceEndpointPolicies(grpc::ServerContext* context, const dp::ReplaceEndpointPoliciesRequest* request,
                                       dp::ReplaceEndpointPoliciesResponse* response) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++batch_calls_;
    }
    for (const auto& item : request->items()) {
      dp::ReplaceEndpointPolicyResponse single;
      grpc::Status status = ReplaceEndpointPolicy(context, &item, &single);
      auto* result = response->add_results();
      *result->mutable_key() = item.key();
      result->set_code(status.error_code());
      result->set_message(status.error_message());
    }
    return grpc::Status::OK;
  }
  int batch_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return batch_calls_;
  }
  grpc::Status SetEndpointIdentity(grpc::ServerContext*, const dp::SetEndpointIdentityRequest* request,
                                   dp::SetEndpointIdentityResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = endpoints_.find(request->key().container_id());
    if (it == endpoints_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such endpoint");
    it->second.set_identity(request->identity());
    *response->mutable_endpoint() = it->second;
    LogLocked(dp::ENDPOINT_CHANGE_UPDATED, it->second);
    return grpc::Status::OK;
  }
  grpc::Status DumpPolicy(grpc::ServerContext*, const dp::DumpPolicyRequest* request,
                          dp::DumpPolicyResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!endpoints_.contains(request->key().container_id())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such endpoint");
    }
    auto it = policies_.find(request->key().container_id());
    if (it == policies_.end()) return grpc::Status::OK;
    response->mutable_policy()->set_installed(true);
    response->mutable_policy()->set_ingress_isolated(it->second.ingress_isolated());
    response->mutable_policy()->set_egress_isolated(it->second.egress_isolated());
    for (const auto& rule : it->second.rules()) {
      auto* entry = response->add_entries();
      *entry->mutable_rule() = rule;
      entry->mutable_rule()->set_action(dp::POLICY_ACTION_ALLOW);
      entry->set_packets(3);
    }
    return grpc::Status::OK;
  }
  grpc::Status UpsertPrefixIdentity(grpc::ServerContext*, const dp::UpsertPrefixIdentityRequest*,
                                    dp::UpsertPrefixIdentityResponse*) override {
    return grpc::Status::OK;
  }
  grpc::Status DeletePrefixIdentity(grpc::ServerContext*, const dp::DeletePrefixIdentityRequest*,
                                    dp::DeletePrefixIdentityResponse*) override {
    return grpc::Status::OK;
  }
  grpc::Status ListPrefixIdentities(grpc::ServerContext*, const dp::ListPrefixIdentitiesRequest*,
                                    dp::ListPrefixIdentitiesResponse*) override {
    return grpc::Status::OK;
  }

 private:
  void LogLocked(dp::EndpointChange change, const dp::Endpoint& endpoint) {
    dp::WatchEndpointsResponse event;
    event.set_change(change);
    *event.mutable_endpoint() = endpoint;
    log_.push_back(event);
    changed_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable changed_;
  bool shutdown_ = false;
  std::map<std::string, dp::Endpoint> endpoints_;
  std::map<std::string, dp::EndpointPolicy> policies_;
  std::map<std::string, int> replace_calls_;
  int batch_calls_ = 0;
  std::vector<dp::WatchEndpointsResponse> log_;
};

// A cluster-state source the test drives by hand.
class ManualSource final : public ClusterStateSource {
 public:
  absl::Status Start(ClusterStateListener* listener) override {
    listener_ = listener;
    return absl::OkStatus();
  }
  void Stop() override {}
  ClusterStateStatus Status() const override {
    ClusterStateStatus status;
    status.description = "manual";
    status.synced = synced_;
    return status;
  }
  void Deliver(const std::vector<ResourceEvent>& events) { listener_->OnBatch(events); }
  void Synced() {
    synced_ = true;
    listener_->OnSynced();
  }

 private:
  ClusterStateListener* listener_ = nullptr;
  std::atomic<bool> synced_ = false;
};

ResourceEvent Upsert(ResourceKind kind, nlohmann::json object) {
  ResourceEvent event;
  event.kind = kind;
  event.name = object["metadata"]["name"];
  if (object["metadata"].contains("namespace")) event.namespace_name = object["metadata"]["namespace"];
  event.object = std::move(object);
  event.origin = "test";
  return event;
}

ResourceEvent Namespace(const std::string& name) {
  return Upsert(ResourceKind::kNamespace,
                {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}});
}

ResourceEvent Pod(const std::string& ns, const std::string& name, nlohmann::json labels) {
  return Upsert(ResourceKind::kPod,
                {{"apiVersion", "v1"},
                 {"kind", "Pod"},
                 {"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}},
                 {"spec", {{"containers", {{{"name", "c"}, {"ports", {{{"containerPort", 80}}}}}}}}}});
}

// Ingress to app=<target> allowed only from app=<from> on TCP 80.
ResourceEvent AllowPolicy(const std::string& ns, const std::string& name, const std::string& target,
                          const std::string& from) {
  return Upsert(ResourceKind::kNetworkPolicy,
                nlohmann::json::parse(R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": ")" + name + R"(", "namespace": ")" + ns + R"("},
                  "spec": {"podSelector": {"matchLabels": {"app": ")" + target + R"("}},
                           "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": ")" + from + R"("}}}],
                                        "ports": [{"port": 80}]}]}})"));
}

class PolicyAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ebpfcni-policy-agent-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    store_ = std::move(*identity::SqliteIdentityStore::Open((dir_ / "identity.db").string(), {256, 65535}));
    identity_ = std::make_unique<identity::IdentityServiceImpl>(*store_, identity::LabelFilter::Default());
    grpc::ServerBuilder builder;
    builder.RegisterService(identity_.get());
    builder.RegisterService(&datapath_);
    server_ = builder.BuildAndStart();
    auto source = std::make_unique<ManualSource>();
    source_ = source.get();
    PolicyAgentOptions options;
    options.node_name = "test-node";
    options.identity_channel = server_->InProcessChannel({});
    options.datapath_channel = server_->InProcessChannel({});
    agent_ = std::make_unique<PolicyAgent>(std::move(options), std::move(source));
    ASSERT_TRUE(agent_->Start().ok());
    source_->Deliver({Namespace("x"), Pod("x", "a", {{"app", "web"}}), Pod("x", "b", {{"app", "web"}}),
                      Pod("x", "c", {{"app", "db"}}), Pod("x", "d", {{"app", "other"}})});
    source_->Synced();
  }
  void TearDown() override {
    agent_->Stop();
    identity_->StopWatches();
    datapath_.Shutdown();
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  // What the CNI ADD does: ResolveEndpoint, then CreateEndpoint with the
  // identity and policy it returned.
  v1::ResolveEndpointResponse AddPod(const std::string& name, const std::string& address) {
    v1::ResolveEndpointRequest request;
    request.mutable_key()->set_container_id("cid-" + name);
    request.mutable_key()->set_interface_name("eth0");
    request.set_pod_namespace("x");
    request.set_pod_name(name);
    auto response = agent_->ResolveEndpoint(request);
    EXPECT_TRUE(response.ok()) << response.status();
    datapath_.AddEndpoint("cid-" + name, "x", name, address, response->identity().id(), &response->policy());
    return *response;
  }

  // Waits (bounded) until the kernel side holds the compiled state.
  void WaitInSync() {
    for (int i = 0; i < 500; ++i) {
      v1::GetStatusResponse status = agent_->GetStatus();
      if (status.source().synced() && status.compiled_generation() > 0 &&
          status.applied_generation() == status.compiled_generation()) {
        // Nothing new arrives from the watches within a short quiet period.
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        if (agent_->GetStatus().compiled_generation() == status.compiled_generation()) return;
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "agent not in sync: " << agent_->GetStatus().DebugString();
  }

  v1::TracePolicyResponse Trace(const std::string& from, const std::string& to) {
    v1::TracePolicyRequest request;
    request.mutable_source()->mutable_pod()->set_namespace_("x");
    request.mutable_source()->mutable_pod()->set_name(from);
    request.mutable_destination()->mutable_pod()->set_namespace_("x");
    request.mutable_destination()->mutable_pod()->set_name(to);
    request.set_protocol(6);
    request.set_port(80);
    request.set_skip_kernel(true);
    auto response = agent_->TracePolicy(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::TracePolicyResponse();
  }

  std::filesystem::path dir_;
  std::unique_ptr<identity::SqliteIdentityStore> store_;
  std::unique_ptr<identity::IdentityServiceImpl> identity_;
  FakeDatapath datapath_;
  std::unique_ptr<grpc::Server> server_;
  ManualSource* source_ = nullptr;
  std::unique_ptr<PolicyAgent> agent_;
};

TEST_F(PolicyAgentTest, ResolveEndpointTakesLabelsOfPodAndNamespaceFromTheClusterState) {
  auto response = AddPod("a", "10.1.0.1");
  EXPECT_TRUE(response.pod_known());
  std::set<std::string> labels;
  for (const auto& label : response.identity().labels()) labels.insert(label.key() + "=" + label.value());
  EXPECT_TRUE(labels.contains("app=web"));
  EXPECT_TRUE(labels.contains("io.kubernetes.pod.namespace=x"));
  EXPECT_TRUE(labels.contains("io.kubernetes.pod.namespace.labels.kubernetes.io/metadata.name=x"));
}

TEST_F(PolicyAgentTest, UnknownPodGetsFallbackLabels) {
  v1::ResolveEndpointRequest request;
  request.mutable_key()->set_container_id("cid-z");
  request.mutable_key()->set_interface_name("eth0");
  request.set_pod_namespace("x");
  request.set_pod_name("not-in-manifests");
  auto* label = request.add_fallback_labels();
  label->set_key("role");
  label->set_value("batch");
  auto response = agent_->ResolveEndpoint(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_FALSE(response->pod_known());
  bool has_role = false;
  for (const auto& l : response->identity().labels()) has_role |= l.key() == "role" && l.value() == "batch";
  EXPECT_TRUE(has_role);
  EXPECT_FALSE(response->policy().ingress_isolated());
}

TEST_F(PolicyAgentTest, PolicyIsPushedOnlyToTheEndpointsItSelects) {
  AddPod("a", "10.1.0.1");
  AddPod("c", "10.1.0.3");
  AddPod("d", "10.1.0.4");
  WaitInSync();
  EXPECT_EQ(datapath_.total_replace_calls(), 0) << "every endpoint started with its policy";

  source_->Deliver({AllowPolicy("x", "allow-web", "db", "web")});
  WaitInSync();
  EXPECT_EQ(datapath_.replace_calls("cid-c"), 1);
  EXPECT_EQ(datapath_.replace_calls("cid-a"), 0);
  EXPECT_EQ(datapath_.replace_calls("cid-d"), 0);
  auto verify = agent_->VerifyDatapath();
  ASSERT_TRUE(verify.ok());
  EXPECT_EQ(verify->endpoints_checked(), 3u);
  EXPECT_EQ(verify->mismatches_size(), 0) << verify->DebugString();

  auto allowed = Trace("a", "c");
  EXPECT_TRUE(allowed.allowed());
  EXPECT_EQ(allowed.ingress().decision(), v1::DECISION_ALLOWED_BY_RULE);
  ASSERT_EQ(allowed.ingress().allowing_rules_size(), 1);
  EXPECT_EQ(allowed.ingress().allowing_rules(0).policy_name(), "allow-web");
  auto denied = Trace("d", "c");
  EXPECT_FALSE(denied.allowed());
  EXPECT_EQ(denied.ingress().decision(), v1::DECISION_DENIED_DEFAULT);
  EXPECT_NE(denied.explanation().find("isolated for ingress by x/allow-web"), std::string::npos)
      << denied.explanation();

  auto listed = agent_->ListPolicies({});
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->policies_size(), 1);
  EXPECT_EQ(listed->policies(0).selected_endpoints_size(), 1);
  ASSERT_EQ(listed->policies(0).rules_size(), 1);
  EXPECT_EQ(listed->policies(0).rules(0).packets(), 3u) << "counters summed from DumpPolicy";
}

TEST_F(PolicyAgentTest, PolicySelectingSeveralEndpointsReachesThemInOneBatch) {
  AddPod("a", "10.1.0.1");  // app=web
  AddPod("b", "10.1.0.2");  // app=web
  AddPod("c", "10.1.0.3");  // app=db
  WaitInSync();
  const int batches_before = datapath_.batch_calls();
  source_->Deliver({AllowPolicy("x", "web-from-db", "web", "db")});
  WaitInSync();
  EXPECT_EQ(datapath_.replace_calls("cid-a"), 1);
  EXPECT_EQ(datapath_.replace_calls("cid-b"), 1);
  EXPECT_EQ(datapath_.replace_calls("cid-c"), 0);
  // One RCU grace period in the datapath for both endpoints, not one each.
  EXPECT_EQ(datapath_.batch_calls() - batches_before, 1);
  auto verify = agent_->VerifyDatapath();
  ASSERT_TRUE(verify.ok());
  EXPECT_EQ(verify->mismatches_size(), 0) << verify->DebugString();
}

TEST_F(PolicyAgentTest, NewPodWithKnownLabelsCausesNoPushAnywhere) {
  source_->Deliver({AllowPolicy("x", "allow-web", "db", "web")});
  AddPod("a", "10.1.0.1");
  AddPod("c", "10.1.0.3");
  WaitInSync();
  const int before = datapath_.total_replace_calls();
  const uint64_t pushes_before = agent_->GetStatus().endpoint_policy_pushes();
  AddPod("b", "10.1.0.2");  // app=web, like a: identity exists
  WaitInSync();
  EXPECT_EQ(datapath_.total_replace_calls(), before);
  EXPECT_EQ(agent_->GetStatus().endpoint_policy_pushes(), pushes_before);
  EXPECT_TRUE(Trace("b", "c").allowed());
}

TEST_F(PolicyAgentTest, LabelChangeOfAPodReResolvesItsIdentity) {
  source_->Deliver({AllowPolicy("x", "allow-web", "db", "web")});
  uint32_t old_identity = AddPod("d", "10.1.0.4").identity().id();
  AddPod("c", "10.1.0.3");
  WaitInSync();
  EXPECT_FALSE(Trace("d", "c").allowed());

  source_->Deliver({Pod("x", "d", {{"app", "web"}})});
  for (int i = 0; i < 300 && datapath_.identity_of("cid-d") == old_identity; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(datapath_.identity_of("cid-d"), old_identity);
  WaitInSync();
  EXPECT_TRUE(Trace("d", "c").allowed());
  auto verify = agent_->VerifyDatapath();
  ASSERT_TRUE(verify.ok());
  EXPECT_EQ(verify->mismatches_size(), 0) << verify->DebugString();
}

TEST_F(PolicyAgentTest, DeletedEndpointIsForgotten) {
  AddPod("a", "10.1.0.1");
  WaitInSync();
  EXPECT_EQ(agent_->GetStatus().endpoints(), 1u);
  datapath_.RemoveEndpoint("cid-a");
  WaitInSync();
  EXPECT_EQ(agent_->GetStatus().endpoints(), 0u);
}

TEST_F(PolicyAgentTest, BadRequestsGetActionableErrors) {
  v1::TracePolicyRequest trace;
  trace.mutable_source()->set_ip("10.1.0.1");
  trace.mutable_destination()->set_ip("10.1.0.2");
  trace.set_protocol(6);
  EXPECT_EQ(agent_->TracePolicy(trace).status().code(), absl::StatusCode::kInvalidArgument) << "port 0";
  trace.set_port(80);
  trace.mutable_destination()->set_ip("not-an-ip");
  EXPECT_EQ(agent_->TracePolicy(trace).status().code(), absl::StatusCode::kInvalidArgument);
  trace.mutable_destination()->mutable_pod()->set_namespace_("x");
  trace.mutable_destination()->mutable_pod()->set_name("nobody");
  auto missing = agent_->TracePolicy(trace);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("x/nobody"), absl::string_view::npos);
  EXPECT_EQ(agent_->DescribeRule(999999).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(agent_->DescribeRule(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(agent_->ResolveEndpoint({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PolicyAgentTest, InvalidPolicyIsReportedAndIgnored) {
  auto bad = AllowPolicy("x", "broken", "db", "web");
  bad.object["spec"]["ingress"][0]["ports"][0]["protocol"] = "ICMP";
  source_->Deliver({bad});
  auto status = agent_->GetStatus();
  ASSERT_EQ(status.source().errors_size(), 1);
  EXPECT_NE(status.source().errors(0).find("x/broken"), std::string::npos) << status.source().errors(0);
  EXPECT_EQ(status.network_policies(), 0u);
}

}  // namespace
}  // namespace ebpfcni::policy
