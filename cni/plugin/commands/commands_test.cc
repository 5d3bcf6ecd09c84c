// The command flow (ordering, rollback, idempotency, error codes) against
// fake IPAM, datapath, identity and policy services served over real gRPC on
// temporary unix sockets, and a fake network layer. The real netlink path is covered by
// cni/net's tests and the integration tests.
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "cni/plugin/plugin.h"
#include "common/net/ip_address.h"
#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "ebpfcni/identity/v1/identity.grpc.pb.h"
#include "ebpfcni/ipam/v1/ipam.grpc.pb.h"
#include "ebpfcni/policy/v1/policy.grpc.pb.h"

namespace ebpfcni::cni {
namespace {

using AttachmentKey = std::pair<std::string, std::string>;  // container id, ifname

// Tells whether two RPCs were in flight at the same time without timing
// them: each party arrives and waits (bounded) for the other. Sequential
// calls make the first wait in vain, so it records "alone".
class Rendezvous {
 public:
  // Returns true when `other` arrived (before or within `wait`).
  bool ArriveAndWait(const std::string& self, const std::string& other, std::chrono::milliseconds wait) {
    std::unique_lock lock(mu_);
    arrived_.insert(self);
    cv_.notify_all();
    bool met = cv_.wait_for(lock, wait, [&] { return arrived_.contains(other); });
    met_[self] = met;
    return met;
  }
  bool Met(const std::string& self) {
    std::lock_guard lock(mu_);
    return met_.contains(self) && met_[self];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> arrived_;
  std::map<std::string, bool> met_;
};

// How long a party of a Rendezvous waits; well under the ADD's timeoutMs
// in the tests that use one.
constexpr std::chrono::milliseconds kRendezvousWait{1500};

// Hands out 10.244.0.2.. and fd00::2.. (lowest free first, so a retried ADD
// after a rollback gets the same address, like the real service).
class FakeIpam final : public ipam::v1::IpamService::Service {
 public:
  std::mutex mu;
  std::map<AttachmentKey, ipam::v1::Allocation> allocations;
  uint64_t capacity_v4 = 200;
  bool dual_stack = true;
  std::map<std::string, grpc::Status> failures;  // by RPC name
  int allocate_calls = 0;
  int release_calls = 0;
  std::vector<ipam::v1::GarbageCollectRequest> gc_requests;
  Rendezvous* rendezvous = nullptr;  // meets "Resolve" when set

  grpc::Status Allocate(grpc::ServerContext*, const ipam::v1::AllocateRequest* request,
                        ipam::v1::AllocateResponse* response) override {
    if (rendezvous != nullptr) rendezvous->ArriveAndWait("Allocate", "Resolve", kRendezvousWait);
    std::lock_guard lock(mu);
    ++allocate_calls;
    if (auto it = failures.find("Allocate"); it != failures.end()) return it->second;
    AttachmentKey key{request->attachment().container_id(), request->attachment().interface_name()};
    if (auto it = allocations.find(key); it != allocations.end()) {
      *response->mutable_ips() = it->second.ips();
      response->set_already_allocated(true);
      return grpc::Status::OK;
    }
    std::set<std::string> used;
    for (const auto& [unused, allocation] : allocations) {
      for (const auto& ip : allocation.ips()) used.insert(ip.address());
    }
    ipam::v1::Allocation allocation;
    *allocation.mutable_attachment() = request->attachment();
    allocation.set_pod_namespace(request->pod_namespace());
    allocation.set_pod_name(request->pod_name());
    allocation.set_network_name(request->network_name());
    std::string v4;
    for (uint64_t i = 2; i < 2 + capacity_v4; ++i) {
      std::string candidate = "10.244.0." + std::to_string(i);
      if (!used.contains(candidate)) {
        v4 = candidate;
        break;
      }
    }
    if (v4.empty()) return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "pool default-ipv4 is full");
    auto* ip = allocation.add_ips();
    ip->set_family(ipam::v1::IP_FAMILY_IPV4);
    ip->set_address(v4);
    ip->set_gateway("10.244.0.1");
    ip->set_pool_prefix_length(24);
    ip->set_pool("default-ipv4");
    if (dual_stack) {
      for (int i = 2;; ++i) {
        std::string candidate = "fd00::" + std::to_string(i);
        if (used.contains(candidate)) continue;
        auto* ip6 = allocation.add_ips();
        ip6->set_family(ipam::v1::IP_FAMILY_IPV6);
        ip6->set_address(candidate);
        ip6->set_gateway("fd00::1");
        ip6->set_pool_prefix_length(64);
        ip6->set_pool("default-ipv6");
        break;
      }
    }
    *response->mutable_ips() = allocation.ips();
    allocations[key] = allocation;
    return grpc::Status::OK;
  }

  grpc::Status Release(grpc::ServerContext*, const ipam::v1::ReleaseRequest* request,
                       ipam::v1::ReleaseResponse* response) override {
    std::lock_guard lock(mu);
    ++release_calls;
    if (auto it = failures.find("Release"); it != failures.end()) return it->second;
    auto it = allocations.find({request->attachment().container_id(), request->attachment().interface_name()});
    if (it != allocations.end()) {
      response->set_released_count(it->second.ips_size());
      allocations.erase(it);
    }
    return grpc::Status::OK;
  }

  grpc::Status ListAllocations(grpc::ServerContext*, const ipam::v1::ListAllocationsRequest* request,
                               ipam::v1::ListAllocationsResponse* response) override {
    std::lock_guard lock(mu);
    for (const auto& [key, allocation] : allocations) {
      if (request->container_id().empty() || key.first == request->container_id()) {
        *response->add_allocations() = allocation;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status GarbageCollect(grpc::ServerContext*, const ipam::v1::GarbageCollectRequest* request,
                              ipam::v1::GarbageCollectResponse* response) override {
    std::lock_guard lock(mu);
    gc_requests.push_back(*request);
    if (auto it = failures.find("GarbageCollect"); it != failures.end()) return it->second;
    std::set<AttachmentKey> valid;
    for (const auto& a : request->valid_attachments()) valid.insert({a.container_id(), a.interface_name()});
    for (auto it = allocations.begin(); it != allocations.end();) {
      const bool other_network =
          !request->network_name().empty() && it->second.network_name() != request->network_name();
      if (valid.contains(it->first) || other_network) {
        ++it;
        continue;
      }
      *response->add_released() = it->second.attachment();
      it = allocations.erase(it);
    }
    return grpc::Status::OK;
  }

  grpc::Status ListPools(grpc::ServerContext*, const ipam::v1::ListPoolsRequest*,
                         ipam::v1::ListPoolsResponse* response) override {
    std::lock_guard lock(mu);
    auto* pool = response->add_pools();
    pool->set_name("default-ipv4");
    pool->set_cidr("10.244.0.0/24");
    pool->set_capacity(capacity_v4);
    pool->set_allocated(allocations.size());
    return grpc::Status::OK;
  }
};

class FakeDatapath final : public datapath::v1::DatapathService::Service {
 public:
  std::mutex mu;
  std::map<AttachmentKey, datapath::v1::Endpoint> endpoints;
  std::map<std::string, grpc::Status> failures;
  std::map<AttachmentKey, datapath::v1::CreateEndpointRequest> create_requests;  // the last one per key
  uint32_t next_id = 1;
  int create_calls = 0;

  grpc::Status CreateEndpoint(grpc::ServerContext*, const datapath::v1::CreateEndpointRequest* request,
                              datapath::v1::CreateEndpointResponse* response) override {
    std::lock_guard lock(mu);
    if (auto it = failures.find("CreateEndpoint"); it != failures.end()) return it->second;
    datapath::v1::Endpoint endpoint;
    *endpoint.mutable_key() = request->key();
    endpoint.set_endpoint_id(next_id++);
    endpoint.set_host_ifindex(request->host_ifindex());
    endpoint.set_host_interface_name(request->host_interface_name());
    endpoint.set_netns_path(request->netns_path());
    *endpoint.mutable_addresses() = request->addresses();
    endpoint.set_pod_namespace(request->pod_namespace());
    endpoint.set_pod_name(request->pod_name());
    endpoint.set_state(datapath::v1::ATTACHMENT_STATE_ATTACHED);
    endpoint.set_identity(request->identity());
    ++create_calls;
    endpoints[{request->key().container_id(), request->key().interface_name()}] = endpoint;
    create_requests[{request->key().container_id(), request->key().interface_name()}] = *request;
    *response->mutable_endpoint() = endpoint;
    return grpc::Status::OK;
  }

  grpc::Status DeleteEndpoint(grpc::ServerContext*, const datapath::v1::DeleteEndpointRequest* request,
                              datapath::v1::DeleteEndpointResponse* response) override {
    std::lock_guard lock(mu);
    if (auto it = failures.find("DeleteEndpoint"); it != failures.end()) return it->second;
    response->set_deleted(endpoints.erase({request->key().container_id(), request->key().interface_name()}) > 0);
    return grpc::Status::OK;
  }

  grpc::Status ListEndpoints(grpc::ServerContext*, const datapath::v1::ListEndpointsRequest*,
                             datapath::v1::ListEndpointsResponse* response) override {
    std::lock_guard lock(mu);
    if (auto it = failures.find("ListEndpoints"); it != failures.end()) return it->second;
    for (const auto& [key, endpoint] : endpoints) *response->add_endpoints() = endpoint;
    return grpc::Status::OK;
  }

  grpc::Status GetEndpoint(grpc::ServerContext*, const datapath::v1::GetEndpointRequest* request,
                           datapath::v1::GetEndpointResponse* response) override {
    std::lock_guard lock(mu);
    auto it = endpoints.find({request->key().container_id(), request->key().interface_name()});
    if (it == endpoints.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such endpoint");
    *response->mutable_endpoint() = it->second;
    return grpc::Status::OK;
  }

  grpc::Status GarbageCollectEndpoints(grpc::ServerContext*,
                                       const datapath::v1::GarbageCollectEndpointsRequest* request,
                                       datapath::v1::GarbageCollectEndpointsResponse* response) override {
    std::lock_guard lock(mu);
    if (auto it = failures.find("GarbageCollectEndpoints"); it != failures.end()) return it->second;
    std::set<AttachmentKey> valid;
    for (const auto& k : request->valid_endpoints()) valid.insert({k.container_id(), k.interface_name()});
    for (auto it = endpoints.begin(); it != endpoints.end();) {
      if (valid.contains(it->first)) {
        ++it;
        continue;
      }
      *response->add_deleted() = it->second.key();
      it = endpoints.erase(it);
    }
    return grpc::Status::OK;
  }
};

// One identity per pod namespace (the CNI sends no labels yet), numbered
// from 256 like the real service's allocatable range; references counted per
// owner as the real service does (the same owner twice holds one).
class FakeIdentity final : public identity::v1::IdentityService::Service {
 public:
  std::mutex mu;
  std::map<std::string, uint32_t> id_by_namespace;
  std::map<uint32_t, std::set<std::string>> references;  // id -> "node|endpoint"
  std::vector<identity::v1::ResolvePodRequest> resolve_requests;
  std::vector<identity::v1::ReleaseIdentityRequest> release_requests;
  std::map<std::string, grpc::Status> failures;
  uint32_t next_id = 256;
  Rendezvous* rendezvous = nullptr;  // meets "Allocate" when set

  static std::string OwnerKey(const identity::v1::Owner& owner) { return owner.node() + "|" + owner.endpoint(); }

  grpc::Status ResolvePod(grpc::ServerContext*, const identity::v1::ResolvePodRequest* request,
                          identity::v1::ResolvePodResponse* response) override {
    if (rendezvous != nullptr) rendezvous->ArriveAndWait("Resolve", "Allocate", kRendezvousWait);
    std::lock_guard lock(mu);
    resolve_requests.push_back(*request);
    if (auto it = failures.find("ResolvePod"); it != failures.end()) return it->second;
    response->mutable_identity()->set_id(TakeReferenceLocked(request->pod_namespace(), request->owner()));
    return grpc::Status::OK;
  }

  // The namespace's identity, with a reference for owner (as the policy
  // agent takes one through ResolvePod).
  uint32_t TakeReference(const std::string& pod_namespace, const identity::v1::Owner& owner) {
    std::lock_guard lock(mu);
    return TakeReferenceLocked(pod_namespace, owner);
  }
  uint32_t TakeReferenceLocked(const std::string& pod_namespace, const identity::v1::Owner& owner) {
    auto [it, inserted] = id_by_namespace.try_emplace(pod_namespace, next_id);
    if (inserted) ++next_id;
    references[it->second].insert(OwnerKey(owner));
    return it->second;
  }

  grpc::Status ReleaseIdentity(grpc::ServerContext*, const identity::v1::ReleaseIdentityRequest* request,
                               identity::v1::ReleaseIdentityResponse* response) override {
    std::lock_guard lock(mu);
    release_requests.push_back(*request);
    if (auto it = failures.find("ReleaseIdentity"); it != failures.end()) return it->second;
    auto it = references.find(request->id());
    if (it == references.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such identity");
    it->second.erase(OwnerKey(request->owner()));
    response->set_remaining_references(it->second.size());
    return grpc::Status::OK;
  }

  size_t ReferenceCount(uint32_t id) {
    std::lock_guard lock(mu);
    auto it = references.find(id);
    return it == references.end() ? 0 : it->second.size();
  }
};

// The policy agent's ResolveEndpoint as the CNI sees it: it resolves the
// pod's identity through the identity service (taking the reference for the
// request's owner there, so the CNI's DEL and rollback release it with the
// identity service as before) and returns an initial policy.
class FakePolicy final : public policy::v1::PolicyService::Service {
 public:
  explicit FakePolicy(FakeIdentity& identity) : identity_(identity) {}

  std::mutex mu;
  std::vector<policy::v1::ResolveEndpointRequest> resolve_requests;
  std::map<std::string, grpc::Status> failures;
  std::optional<uint32_t> identity_override;  // answer this id instead (e.g. 0)
  std::optional<datapath::v1::EndpointPolicy> policy_override;  // instead of InitialPolicy()
  Rendezvous* rendezvous = nullptr;           // meets "Allocate" when set

  // Isolated for ingress, allowing identity 300 on TCP/80 (rule 7).
  static datapath::v1::EndpointPolicy InitialPolicy() {
    datapath::v1::EndpointPolicy policy;
    policy.set_ingress_isolated(true);
    datapath::v1::PolicyRule* rule = policy.add_rules();
    rule->set_direction(datapath::v1::POLICY_DIRECTION_INGRESS);
    rule->set_peer_identity(300);
    rule->set_protocol(6);
    rule->set_port(80);
    rule->set_action(datapath::v1::POLICY_ACTION_ALLOW);
    rule->set_rule_id(7);
    return policy;
  }

  grpc::Status ResolveEndpoint(grpc::ServerContext*, const policy::v1::ResolveEndpointRequest* request,
                               policy::v1::ResolveEndpointResponse* response) override {
    if (rendezvous != nullptr) rendezvous->ArriveAndWait("Resolve", "Allocate", kRendezvousWait);
    std::lock_guard lock(mu);
    resolve_requests.push_back(*request);
    if (auto it = failures.find("ResolveEndpoint"); it != failures.end()) return it->second;
    uint32_t id = identity_override ? *identity_override : identity_.TakeReference(request->pod_namespace(),
                                                                                  request->owner());
    response->mutable_identity()->set_id(id);
    *response->mutable_policy() = policy_override ? *policy_override : InitialPolicy();
    response->set_pod_known(true);
    response->set_generation(12);
    return grpc::Status::OK;
  }

 private:
  FakeIdentity& identity_;
};

std::string HostName() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

// One gRPC server on a unix socket that can be stopped and started again.
class FakeServer {
 public:
  FakeServer(grpc::Service* service, std::string socket_path)
      : service_(service), socket_path_(std::move(socket_path)) {}
  ~FakeServer() { Stop(); }

  void Start() {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path_, grpc::InsecureServerCredentials());
    builder.RegisterService(service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr) << "cannot listen on " << socket_path_;
  }
  void Stop() {
    if (!server_) return;
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
    std::filesystem::remove(socket_path_);
  }

 private:
  grpc::Service* service_;
  std::string socket_path_;
  std::unique_ptr<grpc::Server> server_;
};

// Records what the commands ask of the network layer; no kernel involved.
class FakeNetwork final : public PodNetworkOps {
 public:
  std::set<AttachmentKey> pod_links;        // (netns, ifname) that exist
  std::map<std::string, net::PodNetworkSpec> host_veths;  // by host ifname
  std::vector<net::PodNetworkSpec> teardowns;
  // (netns, "4"/"6") -> the interface holding the default route.
  std::map<AttachmentKey, std::string> default_route_owner;
  absl::Status setup_error;
  absl::Status check_error;
  absl::Status link_exists_error;
  int setup_calls = 0;

  std::string HostVethName(const std::string& prefix, const std::string& container_id,
                           const std::string& ifname) override {
    return (prefix + std::to_string(std::hash<std::string>()(container_id + "/" + ifname))).substr(0, 15);
  }
  absl::StatusOr<net::PodNetworkInfo> Setup(const net::PodNetworkSpec& spec) override {
    ++setup_calls;
    if (!setup_error.ok()) return setup_error;
    if (pod_links.contains({spec.netns_path, spec.container_ifname}) || host_veths.contains(spec.host_ifname)) {
      return absl::AlreadyExistsError("link exists");
    }
    pod_links.insert({spec.netns_path, spec.container_ifname});
    host_veths[spec.host_ifname] = spec;
    net::PodNetworkInfo info{42, "02:00:00:00:00:01", 2, "02:00:00:00:00:02", {}};
    // As the real layer: per family, the first interface of a netns gets the
    // default route, a later one a route to its pool.
    for (const IpAddress& address : spec.addresses) {
      const IpAddress gateway = *(address.is_v4() ? spec.gateway_v4 : spec.gateway_v6);
      auto [owner, first] = default_route_owner.try_emplace({spec.netns_path, address.is_v4() ? "4" : "6"},
                                                            spec.container_ifname);
      if (first) {
        info.routes.push_back({IpPrefix(IpAddress::FromNumber(address.family(), 0), 0), gateway});
        continue;
      }
      for (const IpPrefix& pool : spec.pools) {
        if (pool.Contains(address)) info.routes.push_back({pool, gateway});
      }
    }
    return info;
  }
  absl::Status Teardown(const net::PodNetworkSpec& spec) override {
    teardowns.push_back(spec);
    auto it = host_veths.find(spec.host_ifname);
    if (it != host_veths.end()) {
      pod_links.erase({it->second.netns_path, it->second.container_ifname});
      std::erase_if(default_route_owner, [&](const auto& entry) {
        return entry.first.first == it->second.netns_path && entry.second == it->second.container_ifname;
      });
      host_veths.erase(it);
    }
    return absl::OkStatus();
  }
  absl::Status Check(const net::PodNetworkSpec& spec) override {
    if (!check_error.ok()) return check_error;
    auto it = host_veths.find(spec.host_ifname);
    if (it == host_veths.end()) return absl::FailedPreconditionError("host veth " + spec.host_ifname + " missing");
    if (it->second.addresses != spec.addresses) return absl::FailedPreconditionError("addresses differ");
    return absl::OkStatus();
  }
  absl::StatusOr<bool> LinkExistsInNetns(const std::string& netns, const std::string& ifname) override {
    if (!link_exists_error.ok()) return link_exists_error;
    return pod_links.contains({netns, ifname});
  }
};

struct Outcome {
  int exit_code;
  nlohmann::json json;  // null when stdout was empty
  std::chrono::milliseconds elapsed;
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The plugin's progress logs would bury gtest's output; failures are
    // asserted on the printed error JSON instead.
    spdlog::set_default_logger(spdlog::null_logger_mt("cni-test-" + std::to_string(++logger_serial_)));
    char dir_template[] = "/tmp/cnicore-cmdtest-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    netns_ = NetnsFor("ctr1");
    ipam_server_ = std::make_unique<FakeServer>(&ipam_, dir_ + "/ipam.sock");
    datapath_server_ = std::make_unique<FakeServer>(&datapath_, dir_ + "/datapath.sock");
    identity_server_ = std::make_unique<FakeServer>(&identity_, dir_ + "/identity.sock");
    policy_server_ = std::make_unique<FakeServer>(&policy_, dir_ + "/policy.sock");
    ipam_server_->Start();
    datapath_server_->Start();
    identity_server_->Start();
    policy_server_->Start();
  }
  void TearDown() override {
    ipam_server_.reset();
    datapath_server_.reset();
    identity_server_.reset();
    policy_server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A path per container that exists, as CNI_NETNS must; the fake network
  // does the rest.
  std::string NetnsFor(const std::string& container_id) {
    std::string path = dir_ + "/netns-" + container_id;
    std::ofstream(path) << "";
    return path;
  }

  nlohmann::json Config(const std::string& version = "1.1.0") {
    return {{"cniVersion", version}, {"name", "test-net"}, {"type", "ebpf-cni"}, {"runDir", dir_},
            {"timeoutMs", 1000}, {"logFile", dir_ + "/cni.log"}};
  }

  // The conflist entry of a node running the policy agent.
  nlohmann::json PolicyConfig(const std::string& version = "1.1.0") {
    nlohmann::json config = Config(version);
    config["policySocket"] = dir_ + "/policy.sock";
    return config;
  }

  Outcome Run(const std::string& command, const nlohmann::json& config, const std::string& container_id = "ctr1",
              const std::string& ifname = "eth0", std::optional<std::string> netns = std::nullopt,
              const std::string& args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web") {
    std::map<std::string, std::string> vars = {{"CNI_COMMAND", command},
                                               {"CNI_CONTAINERID", container_id},
                                               {"CNI_NETNS", netns.value_or(NetnsFor(container_id))},
                                               {"CNI_IFNAME", ifname},
                                               {"CNI_ARGS", args},
                                               {"CNI_PATH", "/opt/cni/bin"}};
    EnvLookup lookup = [vars](const char* name) -> std::optional<std::string> {
      auto it = vars.find(name);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
    std::ostringstream out;
    PluginHooks hooks;
    hooks.network = &network_;
    auto start = std::chrono::steady_clock::now();
    int exit_code = RunPlugin(lookup, config.dump(), out, hooks);
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    nlohmann::json json;
    if (!out.str().empty()) json = nlohmann::json::parse(out.str());
    return {exit_code, json, elapsed};
  }

  // A service down: code 11 (try again later), and a message that names
  // the socket (in this test's run dir) and the daemon to start.
  void ExpectTryAgainLaterNaming(const Outcome& outcome, const std::string& socket, const std::string& binary) {
    EXPECT_EQ(outcome.exit_code, 1);
    EXPECT_EQ(outcome.json["code"], 11) << outcome.json;
    std::string msg = outcome.json.value("msg", "");
    EXPECT_NE(msg.find(dir_ + "/" + socket), std::string::npos) << msg;
    EXPECT_NE(msg.find(binary), std::string::npos) << msg;
  }

  // ADD, then the config a runtime would send for DEL/CHECK (prevResult).
  nlohmann::json AddAndGetPrevResultConfig(const std::string& container_id = "ctr1") {
    Outcome add = Run("ADD", Config(), container_id);
    EXPECT_EQ(add.exit_code, 0) << add.json;
    nlohmann::json config = Config();
    config["prevResult"] = add.json;
    return config;
  }

  static inline int logger_serial_ = 0;
  std::string dir_;
  std::string netns_;
  FakeIpam ipam_;
  FakeDatapath datapath_;
  FakeIdentity identity_;
  FakePolicy policy_{identity_};
  FakeNetwork network_;
  std::unique_ptr<FakeServer> ipam_server_;
  std::unique_ptr<FakeServer> datapath_server_;
  std::unique_ptr<FakeServer> identity_server_;
  std::unique_ptr<FakeServer> policy_server_;
};

TEST_F(CommandsTest, AddWiresIpamNetworkAndDatapath) {
  Outcome add = Run("ADD", Config());
  ASSERT_EQ(add.exit_code, 0) << add.json;
  const nlohmann::json& r = add.json;
  EXPECT_EQ(r["cniVersion"], "1.1.0");
  ASSERT_EQ(r["interfaces"].size(), 2u);
  EXPECT_FALSE(r["interfaces"][0].contains("sandbox"));
  EXPECT_EQ(r["interfaces"][0]["mac"], "02:00:00:00:00:01");
  EXPECT_EQ(r["interfaces"][1]["name"], "eth0");
  EXPECT_EQ(r["interfaces"][1]["sandbox"], netns_);
  EXPECT_EQ(r["interfaces"][1]["mac"], "02:00:00:00:00:02");
  ASSERT_EQ(r["ips"].size(), 2u);
  EXPECT_EQ(r["ips"][0]["address"], "10.244.0.2/32");
  EXPECT_EQ(r["ips"][0]["gateway"], "10.244.0.1");
  EXPECT_EQ(r["ips"][0]["interface"], 1);
  EXPECT_EQ(r["ips"][1]["address"], "fd00::2/128");
  EXPECT_EQ(r["routes"], nlohmann::json::parse(R"([{"dst":"0.0.0.0/0","gw":"10.244.0.1"},{"dst":"::/0","gw":"fd00::1"}])"));
  EXPECT_EQ(r["dns"], nlohmann::json::object());

  std::string host_ifname = r["interfaces"][0]["name"];
  ASSERT_TRUE(network_.host_veths.contains(host_ifname));
  const net::PodNetworkSpec& spec = network_.host_veths[host_ifname];
  EXPECT_EQ(spec.container_ifname, "eth0");
  EXPECT_EQ(spec.netns_path, netns_);
  EXPECT_EQ(spec.mtu, 1500);
  EXPECT_EQ(spec.gateway_v4->ToString(), "10.244.0.1");
  EXPECT_EQ(spec.gateway_v6->ToString(), "fd00::1");

  ASSERT_EQ(ipam_.allocations.size(), 1u);
  EXPECT_EQ(ipam_.allocations.begin()->second.pod_name(), "web");
  const datapath::v1::Endpoint& endpoint = datapath_.endpoints.at({"ctr1", "eth0"});
  EXPECT_EQ(endpoint.host_ifindex(), 42u);
  EXPECT_EQ(endpoint.host_interface_name(), host_ifname);
  EXPECT_EQ(endpoint.pod_namespace(), "default");
  EXPECT_EQ(endpoint.addresses_size(), 2);
}

TEST_F(CommandsTest, AddResultFollowsRequestedVersion) {
  Outcome add = Run("ADD", Config("0.3.1"));
  ASSERT_EQ(add.exit_code, 0) << add.json;
  EXPECT_EQ(add.json["cniVersion"], "0.3.1");
  EXPECT_EQ(add.json["ips"][0]["version"], "4");
  EXPECT_EQ(add.json["ips"][1]["version"], "6");
}

TEST_F(CommandsTest, AddSingleStack) {
  ipam_.dual_stack = false;
  Outcome add = Run("ADD", Config("1.0.0"));
  ASSERT_EQ(add.exit_code, 0) << add.json;
  EXPECT_EQ(add.json["ips"].size(), 1u);
  EXPECT_EQ(add.json["routes"].size(), 1u);
  EXPECT_FALSE(network_.host_veths.begin()->second.gateway_v6.has_value());
}

TEST_F(CommandsTest, AddOfExistingInterfaceChangesNothing) {
  nlohmann::json prev_config = AddAndGetPrevResultConfig();
  auto allocations_before = ipam_.allocations.size();
  int setups_before = network_.setup_calls;
  Outcome again = Run("ADD", Config());
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.json["code"], 101) << again.json;
  EXPECT_NE(again.json["msg"].get<std::string>().find("already exists"), std::string::npos);
  EXPECT_EQ(ipam_.allocations.size(), allocations_before);
  EXPECT_TRUE(ipam_.allocations.contains({"ctr1", "eth0"}));
  EXPECT_TRUE(datapath_.endpoints.contains({"ctr1", "eth0"}));
  EXPECT_EQ(network_.setup_calls, setups_before);
  EXPECT_TRUE(network_.teardowns.empty());
  // And the original attachment still checks out.
  EXPECT_EQ(Run("CHECK", prev_config).exit_code, 0);
}

TEST_F(CommandsTest, AddLosingARaceKeepsTheExistingAllocation) {
  // The interface appears between our pre-check and SetupPodNetwork, and the
  // attachment already held its addresses: they stay.
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  network_.pod_links.clear();  // pre-check passes, Setup still sees the host veth
  Outcome again = Run("ADD", Config());
  EXPECT_EQ(again.json["code"], 101) << again.json;
  EXPECT_TRUE(ipam_.allocations.contains({"ctr1", "eth0"}));
  EXPECT_TRUE(datapath_.endpoints.contains({"ctr1", "eth0"}));
  EXPECT_TRUE(network_.teardowns.empty());
}

TEST_F(CommandsTest, AddLosingARaceReturnsANewAllocation) {
  network_.setup_error = absl::AlreadyExistsError("host veth exists");
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 101) << add.json;
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(network_.teardowns.empty());
}

TEST_F(CommandsTest, AddRollsBackWhenTheDatapathFailsAndARetryGetsTheSameAddress) {
  datapath_.failures["CreateEndpoint"] = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "ifindex 42 unknown");
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.exit_code, 1);
  EXPECT_EQ(add.json["code"], 103) << add.json;
  EXPECT_NE(add.json["msg"].get<std::string>().find("ifindex 42 unknown"), std::string::npos);
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(network_.host_veths.empty());
  EXPECT_EQ(network_.teardowns.size(), 1u);
  EXPECT_FALSE(add.json.contains("details")) << "rollback succeeded, nothing left over";

  datapath_.failures.clear();
  Outcome retry = Run("ADD", Config());
  ASSERT_EQ(retry.exit_code, 0) << retry.json;
  EXPECT_EQ(retry.json["ips"][0]["address"], "10.244.0.2/32");
}

TEST_F(CommandsTest, AddRollsBackWhenTheNetworkFails) {
  network_.setup_error = absl::InternalError("netlink: operation not permitted");
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 104) << add.json;
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(datapath_.endpoints.empty());
}

TEST_F(CommandsTest, AddReportsRollbackFailuresInDetails) {
  datapath_.failures["CreateEndpoint"] = grpc::Status(grpc::StatusCode::INTERNAL, "boom");
  ipam_.failures["Release"] = grpc::Status(grpc::StatusCode::INTERNAL, "store locked");
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 999) << add.json;
  ASSERT_TRUE(add.json.contains("details"));
  EXPECT_NE(add.json["details"].get<std::string>().find("store locked"), std::string::npos);
}

TEST_F(CommandsTest, AddWithIpamDownIsTryAgainLaterWithAnActionableMessage) {
  ipam_server_->Stop();
  Outcome add = Run("ADD", Config());
  ExpectTryAgainLaterNaming(add, "ipam.sock", "ebpf-cni-ipam");
  EXPECT_LT(add.elapsed, std::chrono::seconds(5));
  EXPECT_TRUE(network_.host_veths.empty());
}

TEST_F(CommandsTest, AddWithDatapathDownRollsBackAndIsTryAgainLater) {
  datapath_server_->Stop();
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 11) << add.json;
  EXPECT_NE(add.json["msg"].get<std::string>().find("ebpf-cni-datapath"), std::string::npos);
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(network_.host_veths.empty());
}

TEST_F(CommandsTest, AddWhenThePoolIsExhausted) {
  ipam_.capacity_v4 = 1;
  ASSERT_EQ(Run("ADD", Config(), "ctr1").exit_code, 0);
  Outcome second = Run("ADD", Config(), "ctr2");
  EXPECT_EQ(second.json["code"], 100) << second.json;
  EXPECT_NE(second.json["msg"].get<std::string>().find("default-ipv4"), std::string::npos);
  EXPECT_EQ(network_.setup_calls, 1);
}

TEST_F(CommandsTest, AddInputErrors) {
  Outcome missing_netns = Run("ADD", Config(), "ctr1", "eth0", dir_ + "/no-such-netns");
  EXPECT_EQ(missing_netns.json["code"], 3) << missing_netns.json;

  network_.link_exists_error = absl::InvalidArgumentError("not a network namespace");
  Outcome not_netns = Run("ADD", Config());
  EXPECT_EQ(not_netns.json["code"], 4) << not_netns.json;
  network_.link_exists_error = absl::OkStatus();

  Outcome bad_args = Run("ADD", Config(), "ctr1", "eth0", std::nullopt, "K8S_POD_NAME=a;Bogus=1");
  EXPECT_EQ(bad_args.json["code"], 4) << bad_args.json;

  nlohmann::json with_ips = Config();
  with_ips["runtimeConfig"] = {{"ips", {"10.244.0.99/24"}}};
  Outcome unsupported = Run("ADD", with_ips);
  EXPECT_EQ(unsupported.json["code"], 2) << unsupported.json;

  Outcome bad_ifname = Run("ADD", Config(), "ctr1", "this-is-too-long0");
  EXPECT_EQ(bad_ifname.json["code"], 4) << bad_ifname.json;

  EXPECT_EQ(ipam_.allocate_calls, 0);
  EXPECT_EQ(network_.setup_calls, 0);
}

TEST_F(CommandsTest, AddIgnoresOtherPluginsRuntimeConfig) {
  nlohmann::json config = Config();
  config["runtimeConfig"] = {{"PortMappings", {{{"hostPort", 8080}, {"containerPort", 80}}}},
                             {"bandwidth", {{"ingressRate", 1000}}}};
  config["capabilities"] = {{"portMappings", true}};
  EXPECT_EQ(Run("ADD", config).exit_code, 0);
}

// A pod the chained bandwidth plugin will shape on its way out needs the
// host veth's ingress qdisc left free: its programs go on as TCX links.
// Everything else takes the datapath's default (cheaper to attach).
TEST_F(CommandsTest, AddAsksForTcxOnlyWhenThePodsEgressIsLimited) {
  nlohmann::json config = Config();
  config["runtimeConfig"] = {{"bandwidth", {{"ingressRate", 1000000}, {"ingressBurst", 10000}}}};
  ASSERT_EQ(Run("ADD", config, "ingress-only").exit_code, 0);
  EXPECT_EQ(datapath_.create_requests.at({"ingress-only", "eth0"}).tc_attach_mode(),
            datapath::v1::TC_ATTACH_MODE_UNSPECIFIED);

  config["runtimeConfig"] = {{"Bandwidth", {{"egressRate", 1000000}, {"egressBurst", 10000}}}};
  ASSERT_EQ(Run("ADD", config, "egress").exit_code, 0);
  EXPECT_EQ(datapath_.create_requests.at({"egress", "eth0"}).tc_attach_mode(),
            datapath::v1::TC_ATTACH_MODE_TCX);

  config["runtimeConfig"] = {{"bandwidth", {{"egressRate", 0}}}};
  ASSERT_EQ(Run("ADD", config, "zero").exit_code, 0);
  EXPECT_EQ(datapath_.create_requests.at({"zero", "eth0"}).tc_attach_mode(),
            datapath::v1::TC_ATTACH_MODE_UNSPECIFIED);
}

TEST_F(CommandsTest, DelUndoesAddAndIsIdempotent) {
  nlohmann::json config = AddAndGetPrevResultConfig();
  std::string host_ifname = config["prevResult"]["interfaces"][0]["name"];
  Outcome del = Run("DEL", config);
  ASSERT_EQ(del.exit_code, 0) << del.json;
  EXPECT_TRUE(del.json.is_null()) << "DEL prints nothing on success";
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(datapath_.endpoints.empty());
  EXPECT_TRUE(network_.host_veths.empty());
  ASSERT_EQ(network_.teardowns.size(), 1u);
  EXPECT_EQ(network_.teardowns[0].host_ifname, host_ifname);
  EXPECT_EQ(network_.teardowns[0].addresses.size(), 2u);

  EXPECT_EQ(Run("DEL", config).exit_code, 0);
  EXPECT_EQ(Run("DEL", Config(), "ctr1", "eth0", "").exit_code, 0);
  EXPECT_EQ(Run("DEL", Config(), "never-added").exit_code, 0);
}

TEST_F(CommandsTest, DelWithoutPrevResultOrNetnsUsesIpamAddresses) {
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  Outcome del = Run("DEL", Config(), "ctr1", "eth0", "");
  ASSERT_EQ(del.exit_code, 0) << del.json;
  ASSERT_EQ(network_.teardowns.size(), 1u);
  EXPECT_EQ(network_.teardowns[0].addresses.size(), 2u);
  EXPECT_EQ(network_.teardowns[0].netns_path, "");
  EXPECT_TRUE(ipam_.allocations.empty());
}

TEST_F(CommandsTest, DelWithDatapathDownKeepsTheAddressUntilARetry) {
  nlohmann::json config = AddAndGetPrevResultConfig();
  datapath_server_->Stop();
  Outcome del = Run("DEL", config);
  EXPECT_EQ(del.json["code"], 11) << del.json;
  EXPECT_TRUE(network_.host_veths.empty()) << "the interface is removed anyway";
  EXPECT_TRUE(ipam_.allocations.contains({"ctr1", "eth0"})) << "address kept while the endpoint may live";

  datapath_server_->Start();
  Outcome retry = Run("DEL", config);
  EXPECT_EQ(retry.exit_code, 0) << retry.json;
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(datapath_.endpoints.empty());
}

TEST_F(CommandsTest, DelWithIpamDownIsTryAgainLater) {
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  ipam_server_->Stop();
  Outcome del = Run("DEL", Config());
  EXPECT_EQ(del.json["code"], 11) << del.json;
  EXPECT_TRUE(datapath_.endpoints.empty());
  EXPECT_TRUE(network_.host_veths.empty());
  ipam_server_->Start();
  EXPECT_EQ(Run("DEL", Config()).exit_code, 0);
  EXPECT_TRUE(ipam_.allocations.empty());
}

TEST_F(CommandsTest, CheckPassesOnAFreshAttachment) {
  nlohmann::json config = AddAndGetPrevResultConfig();
  Outcome check = Run("CHECK", config);
  EXPECT_EQ(check.exit_code, 0) << check.json;
  EXPECT_TRUE(check.json.is_null());
}

TEST_F(CommandsTest, CheckNamesTheDifference) {
  nlohmann::json config = AddAndGetPrevResultConfig();

  nlohmann::json wrong_address = config;
  wrong_address["prevResult"]["ips"][0]["address"] = "10.244.0.77/32";
  network_.check_error = absl::OkStatus();
  Outcome check = Run("CHECK", wrong_address);
  EXPECT_EQ(check.json["code"], 102) << check.json;

  datapath_.endpoints.at({"ctr1", "eth0"}).set_state(datapath::v1::ATTACHMENT_STATE_INTERFACE_GONE);
  check = Run("CHECK", config);
  EXPECT_EQ(check.json["code"], 102) << check.json;
  EXPECT_NE(check.json["msg"].get<std::string>().find("INTERFACE_GONE"), std::string::npos);

  datapath_.endpoints.clear();
  check = Run("CHECK", config);
  EXPECT_EQ(check.json["code"], 102) << check.json;
  EXPECT_NE(check.json["msg"].get<std::string>().find("no endpoint"), std::string::npos);

  ipam_.allocations.clear();
  check = Run("CHECK", config);
  EXPECT_EQ(check.json["code"], 102) << check.json;
  EXPECT_NE(check.json["msg"].get<std::string>().find("IPAM"), std::string::npos);

  network_.check_error = absl::FailedPreconditionError("route 0.0.0.0/0 via 10.244.0.1 missing");
  check = Run("CHECK", config);
  EXPECT_EQ(check.json["code"], 102) << check.json;
  EXPECT_NE(check.json["msg"].get<std::string>().find("route 0.0.0.0/0"), std::string::npos);
}

TEST_F(CommandsTest, CheckNeedsPrevResultAndAVersionThatHasCheck) {
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  EXPECT_EQ(Run("CHECK", Config()).json["code"], 7);
  nlohmann::json old = Config("0.3.1");
  old["prevResult"] = nlohmann::json::parse(R"({"ips":[]})");
  EXPECT_EQ(Run("CHECK", old).json["code"], 1);
}

TEST_F(CommandsTest, GcFreesEverythingNotValid) {
  ASSERT_EQ(Run("ADD", Config(), "keep").exit_code, 0);
  ASSERT_EQ(Run("ADD", Config(), "stale").exit_code, 0);
  nlohmann::json config = Config();
  config["cni.dev/valid-attachments"] = {{{"containerID", "keep"}, {"ifname", "eth0"}}};
  Outcome gc = Run("GC", config);
  ASSERT_EQ(gc.exit_code, 0) << gc.json;
  EXPECT_TRUE(ipam_.allocations.contains({"keep", "eth0"}));
  EXPECT_FALSE(ipam_.allocations.contains({"stale", "eth0"}));
  EXPECT_TRUE(datapath_.endpoints.contains({"keep", "eth0"}));
  EXPECT_FALSE(datapath_.endpoints.contains({"stale", "eth0"}));
  ASSERT_EQ(network_.teardowns.size(), 1u);
  EXPECT_EQ(network_.teardowns[0].host_ifname, network_.HostVethName("ebpf", "stale", "eth0"));
  EXPECT_EQ(network_.host_veths.size(), 1u);
}

TEST_F(CommandsTest, GcLeavesOtherNetworksAndUnattributableAttachmentsAlone) {
  ASSERT_EQ(Run("ADD", Config(), "mine").exit_code, 0);
  nlohmann::json other = Config();
  other["name"] = "other-net";
  other["hostVethPrefix"] = "oth";
  ASSERT_EQ(Run("ADD", other, "theirs").exit_code, 0);
  // An allocation from before network names were recorded, with its endpoint.
  ASSERT_EQ(Run("ADD", Config(), "legacy").exit_code, 0);
  ipam_.allocations.at({"legacy", "eth0"}).clear_network_name();
  // Endpoints IPAM knows nothing about: one with this network's veth name,
  // one with another prefix (another network with its own IPAM).
  for (const auto& [id, veth] : {std::pair{"leftover", network_.HostVethName("ebpf", "leftover", "eth0")},
                                 std::pair{"foreign", network_.HostVethName("oth", "foreign", "eth0")}}) {
    datapath::v1::Endpoint endpoint;
    endpoint.mutable_key()->set_container_id(id);
    endpoint.mutable_key()->set_interface_name("eth0");
    endpoint.set_host_interface_name(veth);
    datapath_.endpoints[{id, "eth0"}] = endpoint;
  }
  EXPECT_EQ(ipam_.allocations.at({"mine", "eth0"}).network_name(), "test-net");
  EXPECT_EQ(ipam_.allocations.at({"theirs", "eth0"}).network_name(), "other-net");

  nlohmann::json config = Config();
  config["cni.dev/valid-attachments"] = nlohmann::json::array();
  Outcome gc = Run("GC", config);
  ASSERT_EQ(gc.exit_code, 0) << gc.json;
  ASSERT_EQ(ipam_.gc_requests.size(), 1u);
  EXPECT_EQ(ipam_.gc_requests[0].network_name(), "test-net");
  EXPECT_FALSE(ipam_.allocations.contains({"mine", "eth0"}));
  EXPECT_FALSE(datapath_.endpoints.contains({"mine", "eth0"}));
  EXPECT_FALSE(datapath_.endpoints.contains({"leftover", "eth0"}));
  for (const char* id : {"theirs", "legacy"}) {
    EXPECT_TRUE(ipam_.allocations.contains({id, "eth0"})) << id;
    EXPECT_TRUE(datapath_.endpoints.contains({id, "eth0"})) << id;
  }
  EXPECT_TRUE(datapath_.endpoints.contains({"foreign", "eth0"}));
  std::set<std::string> torn_down;
  for (const net::PodNetworkSpec& spec : network_.teardowns) torn_down.insert(spec.host_ifname);
  EXPECT_EQ(torn_down, (std::set<std::string>{network_.HostVethName("ebpf", "mine", "eth0"),
                                              network_.HostVethName("ebpf", "leftover", "eth0")}));

  // The other network's own GC collects its attachment.
  other["cni.dev/valid-attachments"] = nlohmann::json::array();
  ASSERT_EQ(Run("GC", other).exit_code, 0);
  EXPECT_FALSE(ipam_.allocations.contains({"theirs", "eth0"}));
  EXPECT_FALSE(datapath_.endpoints.contains({"theirs", "eth0"}));
  EXPECT_TRUE(datapath_.endpoints.contains({"legacy", "eth0"}));
}

TEST_F(CommandsTest, GcReleasesTheIdentityReferencesOfTheEndpointsItRemoves) {
  ASSERT_EQ(Run("ADD", Config(), "keep").exit_code, 0);
  ASSERT_EQ(Run("ADD", Config(), "stale").exit_code, 0);
  const uint32_t id = identity_.id_by_namespace.at("default");
  ASSERT_EQ(identity_.ReferenceCount(id), 2u);
  nlohmann::json config = Config();
  config["cni.dev/valid-attachments"] = {{{"containerID", "keep"}, {"ifname", "eth0"}}};
  Outcome gc = Run("GC", config);
  ASSERT_EQ(gc.exit_code, 0) << gc.json;
  EXPECT_EQ(identity_.ReferenceCount(id), 1u) << "only keep/eth0 holds it now";
  ASSERT_EQ(identity_.release_requests.size(), 1u);
  EXPECT_EQ(identity_.release_requests[0].id(), id);
  EXPECT_EQ(identity_.release_requests[0].owner().node(), HostName());
  EXPECT_EQ(identity_.release_requests[0].owner().endpoint(), "stale/eth0");
  // Nothing left to collect: nothing released twice.
  ASSERT_EQ(Run("GC", config).exit_code, 0);
  EXPECT_EQ(identity_.release_requests.size(), 1u);
}

TEST_F(CommandsTest, GcKeepsTheReferenceAndTheAddressOfAnEndpointItCannotRemove) {
  ASSERT_EQ(Run("ADD", Config(), "stale").exit_code, 0);
  const uint32_t id = identity_.id_by_namespace.at("default");
  datapath_.failures["DeleteEndpoint"] = grpc::Status(grpc::StatusCode::UNAVAILABLE, "busy");
  nlohmann::json config = Config();
  config["cni.dev/valid-attachments"] = nlohmann::json::array();
  Outcome gc = Run("GC", config);
  EXPECT_EQ(gc.json["code"], 11) << gc.json;
  EXPECT_EQ(identity_.ReferenceCount(id), 1u);
  EXPECT_TRUE(ipam_.allocations.contains({"stale", "eth0"}));
  EXPECT_TRUE(network_.teardowns.empty());

  // Once the datapath answers, a retried GC finishes the job.
  datapath_.failures.clear();
  ASSERT_EQ(Run("GC", config).exit_code, 0);
  EXPECT_EQ(identity_.ReferenceCount(id), 0u);
  EXPECT_TRUE(ipam_.allocations.empty());
}

TEST_F(CommandsTest, GcWithIpamDownCollectsNothing) {
  ASSERT_EQ(Run("ADD", Config(), "stale").exit_code, 0);
  ipam_server_->Stop();
  nlohmann::json config = Config();
  config["cni.dev/valid-attachments"] = nlohmann::json::array();
  EXPECT_EQ(Run("GC", config).json["code"], 11);
  EXPECT_TRUE(datapath_.endpoints.contains({"stale", "eth0"})) << "cannot tell whose it is";
}

TEST_F(CommandsTest, GcAcceptsTheOlderKeyAndNeedsOne) {
  ASSERT_EQ(Run("ADD", Config(), "a").exit_code, 0);
  nlohmann::json config = Config();
  EXPECT_EQ(Run("GC", config).json["code"], 7);
  EXPECT_EQ(ipam_.allocations.size(), 1u) << "no list, nothing collected";
  config["cni.dev/attachments"] = nlohmann::json::array();
  EXPECT_EQ(Run("GC", config).exit_code, 0);
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_EQ(Run("GC", Config("1.0.0")).json["code"], 1);
}

TEST_F(CommandsTest, GcKeepsAddressesWhileTheDatapathIsDown) {
  ASSERT_EQ(Run("ADD", Config(), "stale").exit_code, 0);
  datapath_server_->Stop();
  nlohmann::json config = Config();
  config["cni.dev/valid-attachments"] = nlohmann::json::array();
  EXPECT_EQ(Run("GC", config).json["code"], 11);
  EXPECT_EQ(ipam_.allocations.size(), 1u);
}

TEST_F(CommandsTest, StatusReportsReadiness) {
  Outcome status = Run("STATUS", Config());
  EXPECT_EQ(status.exit_code, 0) << status.json;
  EXPECT_EQ(Run("STATUS", Config("1.0.0")).json["code"], 1);

  ipam_.capacity_v4 = 1;
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  status = Run("STATUS", Config());
  EXPECT_EQ(status.json["code"], 50) << status.json;
  EXPECT_NE(status.json["msg"].get<std::string>().find("no IP addresses available"), std::string::npos);
}

TEST_F(CommandsTest, StatusWithAServiceDownIsNotAvailable) {
  datapath_server_->Stop();
  Outcome status = Run("STATUS", Config());
  EXPECT_EQ(status.json["code"], 50) << status.json;
  EXPECT_NE(status.json["msg"].get<std::string>().find("ebpf-cni-datapath"), std::string::npos);
  datapath_server_->Start();
  ipam_server_->Stop();
  status = Run("STATUS", Config());
  EXPECT_EQ(status.json["code"], 50) << status.json;
  EXPECT_NE(status.json["msg"].get<std::string>().find("ebpf-cni-ipam"), std::string::npos);
}

TEST_F(CommandsTest, VersionNeedsNoConfig) {
  std::ostringstream out;
  PluginHooks hooks;
  int code = RunPlugin([](const char* name) -> std::optional<std::string> {
    if (std::string(name) == "CNI_COMMAND") return "VERSION";
    return std::nullopt;
  }, "", out, hooks);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(nlohmann::json::parse(out.str())["supportedVersions"].size(), 5u);
}

TEST_F(CommandsTest, OnAnsweredSeesTheWholeAnswerAndTheExitCode) {
  // main() ends the process in on_answered, so by then the answer must be
  // complete on stdout.
  for (bool fail : {false, true}) {
    ipam_.capacity_v4 = fail ? 0 : 200;
    std::ostringstream out;
    std::optional<int> answered_code;
    std::string answered_text;
    PluginHooks hooks;
    hooks.network = &network_;
    hooks.on_answered = [&](int code) {
      answered_code = code;
      answered_text = out.str();
    };
    std::map<std::string, std::string> vars = {{"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", fail ? "c2" : "c1"},
                                               {"CNI_NETNS", NetnsFor("c1")}, {"CNI_IFNAME", "eth0"},
                                               {"CNI_PATH", "/opt/cni/bin"}};
    int code = RunPlugin([&](const char* name) -> std::optional<std::string> {
      auto it = vars.find(name);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    }, Config().dump(), out, hooks);
    ASSERT_TRUE(answered_code.has_value());
    EXPECT_EQ(*answered_code, code);
    EXPECT_EQ(code, fail ? 1 : 0);
    EXPECT_EQ(answered_text, out.str());
    nlohmann::json answer = nlohmann::json::parse(answered_text);
    EXPECT_EQ(answer.contains("code"), fail) << answer;
  }
}

TEST_F(CommandsTest, ErrorsBeforeTheConfigIsKnownAreStillSpecJson) {
  std::ostringstream out;
  PluginHooks hooks;
  hooks.network = &network_;
  int code = RunPlugin([](const char*) -> std::optional<std::string> { return std::nullopt; },
                       R"({"cniVersion":"0.4.0"})", out, hooks);
  EXPECT_EQ(code, 1);
  nlohmann::json json = nlohmann::json::parse(out.str());
  EXPECT_EQ(json["code"], 4);
  EXPECT_EQ(json["cniVersion"], "0.4.0");
  EXPECT_TRUE(json["msg"].is_string());

  Outcome bad_json = Run("ADD", nlohmann::json("not an object"));
  EXPECT_EQ(bad_json.json["code"], 6) << bad_json.json;
  EXPECT_EQ(bad_json.json["cniVersion"], "1.1.0");
}

TEST_F(CommandsTest, SeveralInterfacesOfOneContainerAreSeparateAttachments) {
  std::set<std::string> addresses;
  std::set<std::string> host_veths;
  for (int i = 0; i < 3; ++i) {
    Outcome add = Run("ADD", Config(), "ctr", "net" + std::to_string(i));
    ASSERT_EQ(add.exit_code, 0) << add.json;
    addresses.insert(add.json["ips"][0]["address"].get<std::string>());
    host_veths.insert(add.json["interfaces"][0]["name"].get<std::string>());
  }
  EXPECT_EQ(addresses.size(), 3u);
  EXPECT_EQ(host_veths.size(), 3u);
  ASSERT_EQ(Run("DEL", Config(), "ctr", "net1").exit_code, 0);
  EXPECT_EQ(ipam_.allocations.size(), 2u);
  EXPECT_FALSE(ipam_.allocations.contains({"ctr", "net1"}));
}

TEST_F(CommandsTest, ASecondInterfaceReportsItsPoolRoutesAndBothPassCheck) {
  Outcome first = Run("ADD", Config(), "pod", "eth0");
  ASSERT_EQ(first.exit_code, 0) << first.json;
  Outcome second = Run("ADD", Config(), "pod", "net1");
  ASSERT_EQ(second.exit_code, 0) << second.json;
  EXPECT_EQ(first.json["routes"],
            nlohmann::json::parse(R"([{"dst":"0.0.0.0/0","gw":"10.244.0.1"},{"dst":"::/0","gw":"fd00::1"}])"));
  // The network layer was told the pools, and the result carries what it
  // routed through the second interface: its pools, no default route.
  const net::PodNetworkSpec& spec = network_.host_veths.at(second.json["interfaces"][0]["name"].get<std::string>());
  EXPECT_EQ(spec.pools.size(), 2u);
  EXPECT_EQ(second.json["routes"],
            nlohmann::json::parse(R"([{"dst":"10.244.0.0/24","gw":"10.244.0.1"},{"dst":"fd00::/64","gw":"fd00::1"}])"));
  EXPECT_NE(first.json["ips"][0]["address"], second.json["ips"][0]["address"]);
  EXPECT_TRUE(datapath_.endpoints.contains({"pod", "eth0"}));
  EXPECT_TRUE(datapath_.endpoints.contains({"pod", "net1"}));

  for (const auto& [ifname, result] : {std::pair{"eth0", first.json}, std::pair{"net1", second.json}}) {
    nlohmann::json config = Config();
    config["prevResult"] = result;
    Outcome check = Run("CHECK", config, "pod", ifname);
    EXPECT_EQ(check.exit_code, 0) << ifname << ": " << check.json;
  }
  // Both interfaces hold a reference (one owner each) to the pod's identity.
  EXPECT_EQ(identity_.ReferenceCount(identity_.id_by_namespace.at("default")), 2u);
  nlohmann::json del = Config();
  del["prevResult"] = first.json;
  ASSERT_EQ(Run("DEL", del, "pod", "eth0").exit_code, 0);
  EXPECT_EQ(identity_.ReferenceCount(identity_.id_by_namespace.at("default")), 1u);
  EXPECT_TRUE(datapath_.endpoints.contains({"pod", "net1"}));
  EXPECT_TRUE(ipam_.allocations.contains({"pod", "net1"}));
}

// --- security identity ------------------------------------------------------

TEST_F(CommandsTest, AddCreatesTheEndpointWithThePodsIdentity) {
  Outcome add = Run("ADD", Config());
  ASSERT_EQ(add.exit_code, 0) << add.json;
  ASSERT_EQ(identity_.resolve_requests.size(), 1u);
  const identity::v1::ResolvePodRequest& request = identity_.resolve_requests[0];
  EXPECT_EQ(request.pod_namespace(), "default");
  EXPECT_EQ(request.pod_name(), "web");
  EXPECT_EQ(request.labels_size(), 0);
  EXPECT_EQ(request.owner().node(), HostName());
  EXPECT_EQ(request.owner().endpoint(), "ctr1/eth0");
  const uint32_t id = identity_.id_by_namespace.at("default");
  EXPECT_GE(id, 256u);
  EXPECT_EQ(datapath_.endpoints.at({"ctr1", "eth0"}).identity(), id);
  EXPECT_EQ(identity_.ReferenceCount(id), 1u);
}

TEST_F(CommandsTest, AddOutsideKubernetesUsesDefaultNamespaceAndTheContainerId) {
  // podman / ctr send no K8S_POD_* keys.
  Outcome add = Run("ADD", Config(), "ctr9", "eth0", std::nullopt, "");
  ASSERT_EQ(add.exit_code, 0) << add.json;
  ASSERT_EQ(identity_.resolve_requests.size(), 1u);
  EXPECT_EQ(identity_.resolve_requests[0].pod_namespace(), "default");
  EXPECT_EQ(identity_.resolve_requests[0].pod_name(), "ctr9");
  EXPECT_NE(datapath_.endpoints.at({"ctr9", "eth0"}).identity(), 0u);
}

TEST_F(CommandsTest, AddWithIdentityDownRollsBackEverythingAndIsTryAgainLater) {
  identity_server_->Stop();
  Outcome add = Run("ADD", Config());
  ExpectTryAgainLaterNaming(add, "identity.sock", "ebpf-cni-identity");
  EXPECT_FALSE(add.json.contains("details")) << "rollback succeeded, nothing left over: " << add.json;
  EXPECT_EQ(datapath_.create_calls, 0) << "no endpoint without an identity";
  EXPECT_TRUE(datapath_.endpoints.empty());
  EXPECT_TRUE(network_.host_veths.empty());
  EXPECT_TRUE(network_.pod_links.empty());
  EXPECT_EQ(network_.teardowns.size(), 1u);
  EXPECT_TRUE(ipam_.allocations.empty());

  identity_server_->Start();
  Outcome retry = Run("ADD", Config());
  ASSERT_EQ(retry.exit_code, 0) << retry.json;
  EXPECT_EQ(retry.json["ips"][0]["address"], "10.244.0.2/32");
  EXPECT_NE(datapath_.endpoints.at({"ctr1", "eth0"}).identity(), 0u);
}

TEST_F(CommandsTest, AddRollbackDropsTheIdentityReference) {
  datapath_.failures["CreateEndpoint"] = grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed");
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 11) << add.json;
  const uint32_t id = identity_.id_by_namespace.at("default");
  EXPECT_EQ(identity_.ReferenceCount(id), 0u);
  ASSERT_EQ(identity_.release_requests.size(), 1u);
  EXPECT_EQ(identity_.release_requests[0].owner().endpoint(), "ctr1/eth0");
  EXPECT_TRUE(ipam_.allocations.empty());
}

TEST_F(CommandsTest, AddRejectedByTheIdentityServiceRollsBack) {
  identity_.failures["ResolvePod"] = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "no identity left");
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 103) << "not 100, which means an IPAM pool is full: " << add.json;
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(network_.host_veths.empty());
}

TEST_F(CommandsTest, DelReleasesTheIdentityReference) {
  nlohmann::json config = AddAndGetPrevResultConfig();
  const uint32_t id = identity_.id_by_namespace.at("default");
  ASSERT_EQ(identity_.ReferenceCount(id), 1u);
  Outcome del = Run("DEL", config);
  ASSERT_EQ(del.exit_code, 0) << del.json;
  EXPECT_EQ(identity_.ReferenceCount(id), 0u);
  ASSERT_EQ(identity_.release_requests.size(), 1u);
  EXPECT_EQ(identity_.release_requests[0].id(), id);
  EXPECT_EQ(identity_.release_requests[0].owner().node(), HostName());
  EXPECT_EQ(identity_.release_requests[0].owner().endpoint(), "ctr1/eth0");
  EXPECT_TRUE(datapath_.endpoints.empty());

  // The endpoint is gone: a second DEL has nothing to release.
  EXPECT_EQ(Run("DEL", config).exit_code, 0);
  EXPECT_EQ(identity_.release_requests.size(), 1u);
}

TEST_F(CommandsTest, DelWithIdentityDownRemovesNothingUntilARetry) {
  nlohmann::json config = AddAndGetPrevResultConfig();
  const uint32_t id = identity_.id_by_namespace.at("default");
  identity_server_->Stop();
  Outcome del = Run("DEL", config);
  EXPECT_EQ(del.exit_code, 1);
  EXPECT_EQ(del.json["code"], 11) << del.json;
  EXPECT_NE(del.json["msg"].get<std::string>().find("ebpf-cni-identity"), std::string::npos) << del.json;
  EXPECT_TRUE(datapath_.endpoints.contains({"ctr1", "eth0"})) << "the endpoint remembers the identity";
  EXPECT_EQ(network_.host_veths.size(), 1u);
  EXPECT_TRUE(network_.teardowns.empty());
  EXPECT_TRUE(ipam_.allocations.contains({"ctr1", "eth0"}));

  identity_server_->Start();
  Outcome retry = Run("DEL", config);
  ASSERT_EQ(retry.exit_code, 0) << retry.json;
  EXPECT_EQ(identity_.ReferenceCount(id), 0u);
  EXPECT_TRUE(datapath_.endpoints.empty());
  EXPECT_TRUE(network_.host_veths.empty());
  EXPECT_TRUE(ipam_.allocations.empty());
}

TEST_F(CommandsTest, DelNeedsNoIdentityServiceWhenThereIsNoReference) {
  ASSERT_EQ(Run("ADD", Config(), "reserved").exit_code, 0);
  ASSERT_EQ(Run("ADD", Config(), "init").exit_code, 0);
  datapath_.endpoints.at({"reserved", "eth0"}).set_identity(2);  // reserved: never reference counted
  datapath_.endpoints.at({"init", "eth0"}).set_identity(0);
  identity_server_->Stop();
  EXPECT_EQ(Run("DEL", Config(), "reserved").exit_code, 0);
  EXPECT_EQ(Run("DEL", Config(), "init").exit_code, 0);
  EXPECT_EQ(Run("DEL", Config(), "never-added").exit_code, 0);
  EXPECT_TRUE(datapath_.endpoints.empty());
  EXPECT_TRUE(ipam_.allocations.empty());
}

TEST_F(CommandsTest, DelGoesOnWhenTheIdentityServiceRefusesTheRelease) {
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  // Answered, so retrying cannot help: DEL must still be able to finish.
  identity_.failures["ReleaseIdentity"] = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "owner.node empty");
  Outcome del = Run("DEL", Config());
  EXPECT_EQ(del.exit_code, 0) << del.json;
  EXPECT_TRUE(datapath_.endpoints.empty());
  EXPECT_TRUE(ipam_.allocations.empty());
}

TEST_F(CommandsTest, CheckNamesAnEndpointWithoutIdentity) {
  nlohmann::json config = AddAndGetPrevResultConfig();
  datapath_.endpoints.at({"ctr1", "eth0"}).set_identity(0);
  Outcome check = Run("CHECK", config);
  EXPECT_EQ(check.json["code"], 102) << check.json;
  EXPECT_NE(check.json["msg"].get<std::string>().find("no security identity"), std::string::npos) << check.json;
}

TEST_F(CommandsTest, StatusWithIdentityDownIsNotAvailable) {
  identity_server_->Stop();
  Outcome status = Run("STATUS", Config());
  EXPECT_EQ(status.json["code"], 50) << status.json;
  EXPECT_NE(status.json["msg"].get<std::string>().find("ebpf-cni-identity"), std::string::npos) << status.json;
}

// --- identity resolution alongside IPAM ---------------------------------------

TEST_F(CommandsTest, AddResolvesTheIdentityWhileIpamAllocates) {
  Rendezvous rendezvous;
  ipam_.rendezvous = &rendezvous;
  identity_.rendezvous = &rendezvous;
  nlohmann::json config = Config();
  config["timeoutMs"] = 5000;
  Outcome add = Run("ADD", config);
  ASSERT_EQ(add.exit_code, 0) << add.json;
  EXPECT_TRUE(rendezvous.Met("Allocate")) << "Allocate ran alone: ResolvePod was not in flight at the same time";
  EXPECT_TRUE(rendezvous.Met("Resolve")) << "ResolvePod ran alone: Allocate was not in flight at the same time";
  EXPECT_NE(datapath_.endpoints.at({"ctr1", "eth0"}).identity(), 0u);
}

TEST_F(CommandsTest, AddWithIpamDownDropsTheIdentityReferenceItTookAndReleasesNoAddress) {
  ipam_.failures["Allocate"] = grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed");
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 11) << add.json;
  EXPECT_FALSE(add.json.contains("details")) << "rollback succeeded, nothing left over: " << add.json;
  const uint32_t id = identity_.id_by_namespace.at("default");
  EXPECT_EQ(identity_.ReferenceCount(id), 0u) << "the reference resolved alongside Allocate is given back";
  ASSERT_EQ(identity_.release_requests.size(), 1u);
  EXPECT_EQ(identity_.release_requests[0].owner().endpoint(), "ctr1/eth0");
  EXPECT_EQ(ipam_.release_calls, 0) << "Allocate failed: there is no address of this call to release";
  EXPECT_EQ(network_.setup_calls, 0);
  EXPECT_EQ(datapath_.create_calls, 0);
}

TEST_F(CommandsTest, AddWithBothIpamAndIdentityFailingReportsIpamAndReleasesNothing) {
  ipam_.capacity_v4 = 0;
  identity_server_->Stop();
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 100) << "the first step's error: " << add.json;
  EXPECT_TRUE(identity_.release_requests.empty());
  EXPECT_EQ(ipam_.release_calls, 0);
}

TEST_F(CommandsTest, AddOfExistingInterfaceAsksNoService) {
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  const uint32_t id = identity_.id_by_namespace.at("default");
  Outcome again = Run("ADD", Config());
  EXPECT_EQ(again.json["code"], 101) << again.json;
  EXPECT_EQ(ipam_.allocate_calls, 1);
  EXPECT_EQ(identity_.resolve_requests.size(), 1u) << "the pre-check comes before any resolution";
  EXPECT_TRUE(identity_.release_requests.empty());
  EXPECT_EQ(identity_.ReferenceCount(id), 1u);
}

TEST_F(CommandsTest, AddLosingARaceKeepsTheReferenceTheExistingEndpointHolds) {
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  const uint32_t id = identity_.id_by_namespace.at("default");
  network_.pod_links.clear();  // pre-check passes, Setup still sees the host veth
  Outcome again = Run("ADD", Config());
  EXPECT_EQ(again.json["code"], 101) << again.json;
  EXPECT_FALSE(again.json.contains("details")) << again.json;
  EXPECT_TRUE(identity_.release_requests.empty()) << "the existing endpoint holds this owner's reference";
  EXPECT_EQ(identity_.ReferenceCount(id), 1u);
  EXPECT_EQ(datapath_.endpoints.at({"ctr1", "eth0"}).identity(), id);
}

TEST_F(CommandsTest, AddLosingARaceToALeftoverVethDropsItsOwnReference) {
  network_.setup_error = absl::AlreadyExistsError("host veth exists");
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 101) << add.json;
  const uint32_t id = identity_.id_by_namespace.at("default");
  EXPECT_EQ(identity_.ReferenceCount(id), 0u) << "no endpoint holds it: the reference was this call's alone";
  EXPECT_TRUE(ipam_.allocations.empty());
}

TEST_F(CommandsTest, AddLosingARaceKeepsTheReferenceWhenTheDatapathCannotTell) {
  network_.setup_error = absl::AlreadyExistsError("host veth exists");
  datapath_server_->Stop();
  Outcome add = Run("ADD", Config());
  EXPECT_EQ(add.json["code"], 101) << add.json;
  const uint32_t id = identity_.id_by_namespace.at("default");
  EXPECT_EQ(identity_.ReferenceCount(id), 1u) << "a leaked reference beats dropping another attachment's";
  ASSERT_TRUE(add.json.contains("details")) << add.json;
  EXPECT_NE(add.json["details"].get<std::string>().find("identity " + std::to_string(id)), std::string::npos);
}

// --- policy agent (policySocket) ------------------------------------------------

TEST_F(CommandsTest, AddWithPolicySocketCreatesTheEndpointWithTheAgentsIdentityAndPolicy) {
  Outcome add = Run("ADD", PolicyConfig());
  ASSERT_EQ(add.exit_code, 0) << add.json;
  EXPECT_TRUE(identity_.resolve_requests.empty()) << "the agent resolves the pod, not the CNI";
  ASSERT_EQ(policy_.resolve_requests.size(), 1u);
  const policy::v1::ResolveEndpointRequest& request = policy_.resolve_requests[0];
  EXPECT_EQ(request.key().container_id(), "ctr1");
  EXPECT_EQ(request.key().interface_name(), "eth0");
  EXPECT_EQ(request.pod_namespace(), "default");
  EXPECT_EQ(request.pod_name(), "web");
  EXPECT_EQ(request.owner().node(), HostName());
  EXPECT_EQ(request.owner().endpoint(), "ctr1/eth0");

  const uint32_t id = identity_.id_by_namespace.at("default");
  const datapath::v1::CreateEndpointRequest& create = datapath_.create_requests.at({"ctr1", "eth0"});
  EXPECT_EQ(create.identity(), id);
  ASSERT_TRUE(create.has_policy()) << "the endpoint must never exist without its policy";
  EXPECT_EQ(create.policy().SerializeAsString(), FakePolicy::InitialPolicy().SerializeAsString());
  EXPECT_EQ(identity_.ReferenceCount(id), 1u);

  // DEL drops the reference the agent took for this owner.
  ASSERT_EQ(Run("DEL", PolicyConfig()).exit_code, 0);
  EXPECT_EQ(identity_.ReferenceCount(id), 0u);
}

TEST_F(CommandsTest, AddSendsNoPolicyWhenTheAgentIsolatesNothing) {
  policy_.policy_override = datapath::v1::EndpointPolicy();  // no NetworkPolicy selects the pod
  ASSERT_EQ(Run("ADD", PolicyConfig()).exit_code, 0);
  const datapath::v1::CreateEndpointRequest& create = datapath_.create_requests.at({"ctr1", "eth0"});
  EXPECT_FALSE(create.has_policy()) << "not isolated = no policy; nothing to install";
  EXPECT_NE(create.identity(), 0u);

  datapath::v1::EndpointPolicy events_only;
  events_only.set_verdict_events(true);
  policy_.policy_override = events_only;
  ASSERT_EQ(Run("ADD", PolicyConfig(), "ctr2").exit_code, 0);
  EXPECT_TRUE(datapath_.create_requests.at({"ctr2", "eth0"}).has_policy()) << "verdict events must be installed";
}

TEST_F(CommandsTest, AddWithoutPolicySocketNeverAsksTheAgentAndSendsNoPolicy) {
  ASSERT_EQ(Run("ADD", Config()).exit_code, 0);
  EXPECT_TRUE(policy_.resolve_requests.empty());
  EXPECT_FALSE(datapath_.create_requests.at({"ctr1", "eth0"}).has_policy());
}

TEST_F(CommandsTest, AddOutsideKubernetesAsksTheAgentForDefaultAndTheContainerId) {
  Outcome add = Run("ADD", PolicyConfig(), "ctr9", "eth0", std::nullopt, "");
  ASSERT_EQ(add.exit_code, 0) << add.json;
  ASSERT_EQ(policy_.resolve_requests.size(), 1u);
  EXPECT_EQ(policy_.resolve_requests[0].pod_namespace(), "default");
  EXPECT_EQ(policy_.resolve_requests[0].pod_name(), "ctr9");
}

TEST_F(CommandsTest, AddResolvesWithTheAgentWhileIpamAllocates) {
  Rendezvous rendezvous;
  ipam_.rendezvous = &rendezvous;
  policy_.rendezvous = &rendezvous;
  nlohmann::json config = PolicyConfig();
  config["timeoutMs"] = 5000;
  ASSERT_EQ(Run("ADD", config).exit_code, 0);
  EXPECT_TRUE(rendezvous.Met("Allocate"));
  EXPECT_TRUE(rendezvous.Met("Resolve"));
}

TEST_F(CommandsTest, AddWithPolicyAgentDownRollsBackAndIsTryAgainLater) {
  policy_server_->Stop();
  Outcome add = Run("ADD", PolicyConfig());
  ExpectTryAgainLaterNaming(add, "policy.sock", "ebpf-cni-policy");
  EXPECT_NE(add.json["msg"].get<std::string>().find("ResolveEndpoint"), std::string::npos) << add.json;
  EXPECT_FALSE(add.json.contains("details")) << "rollback succeeded, nothing left over: " << add.json;
  EXPECT_EQ(datapath_.create_calls, 0) << "no endpoint without identity and policy";
  EXPECT_TRUE(network_.host_veths.empty());
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(identity_.resolve_requests.empty()) << "no fallback that would create an unprotected endpoint";

  policy_server_->Start();
  Outcome retry = Run("ADD", PolicyConfig());
  ASSERT_EQ(retry.exit_code, 0) << retry.json;
  EXPECT_EQ(retry.json["ips"][0]["address"], "10.244.0.2/32");
}

TEST_F(CommandsTest, AddWithPolicyAgentTooSlowIsTryAgainLater) {
  policy_.failures["ResolveEndpoint"] = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "waited for sync");
  Outcome add = Run("ADD", PolicyConfig());
  EXPECT_EQ(add.json["code"], 11) << add.json;
  EXPECT_NE(add.json["msg"].get<std::string>().find("ebpf-cni-policy"), std::string::npos) << add.json;
}

TEST_F(CommandsTest, AddRollbackReleasesTheReferenceThePolicyAgentTook) {
  datapath_.failures["CreateEndpoint"] = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rule 7: bad port");
  Outcome add = Run("ADD", PolicyConfig());
  EXPECT_EQ(add.json["code"], 103) << add.json;
  const uint32_t id = identity_.id_by_namespace.at("default");
  EXPECT_EQ(identity_.ReferenceCount(id), 0u);
  ASSERT_EQ(identity_.release_requests.size(), 1u);
  EXPECT_EQ(identity_.release_requests[0].id(), id);
  EXPECT_EQ(identity_.release_requests[0].owner().endpoint(), "ctr1/eth0");
  EXPECT_TRUE(ipam_.allocations.empty());
  EXPECT_TRUE(network_.host_veths.empty());
}

TEST_F(CommandsTest, AddRejectedByThePolicyAgentIs103) {
  for (grpc::StatusCode code : {grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::FAILED_PRECONDITION,
                                grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::NOT_FOUND}) {
    policy_.failures["ResolveEndpoint"] = grpc::Status(code, "agent says no");
    Outcome add = Run("ADD", PolicyConfig());
    EXPECT_EQ(add.json["code"], 103) << "gRPC code " << code << ": " << add.json;
    EXPECT_NE(add.json["msg"].get<std::string>().find("agent says no"), std::string::npos) << add.json;
    EXPECT_TRUE(ipam_.allocations.empty());
    EXPECT_TRUE(network_.host_veths.empty());
  }
  EXPECT_EQ(datapath_.create_calls, 0);
}

TEST_F(CommandsTest, AddWithIdentityZeroFromThePolicyAgentIs103) {
  policy_.identity_override = 0;
  Outcome add = Run("ADD", PolicyConfig());
  EXPECT_EQ(add.json["code"], 103) << add.json;
  EXPECT_NE(add.json["msg"].get<std::string>().find("policy agent at " + dir_ + "/policy.sock"), std::string::npos)
      << add.json;
  EXPECT_EQ(datapath_.create_calls, 0);
}

TEST_F(CommandsTest, StatusChecksThePolicyAgentOnlyWhenConfigured) {
  EXPECT_EQ(Run("STATUS", PolicyConfig()).exit_code, 0);
  policy_server_->Stop();
  EXPECT_EQ(Run("STATUS", Config()).exit_code, 0) << "no policySocket: the agent is not needed";
  Outcome status = Run("STATUS", PolicyConfig());
  EXPECT_EQ(status.json["code"], 50) << status.json;
  EXPECT_NE(status.json["msg"].get<std::string>().find("ebpf-cni-policy"), std::string::npos) << status.json;
}

}  // namespace
}  // namespace ebpfcni::cni
