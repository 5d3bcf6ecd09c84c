#include "services/datapath/identity_liveness.h"

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "common/grpc/channel.h"

namespace ebpfcni::datapath {
namespace {

// Identities below this are reserved and hold no references.
constexpr uint32_t kFirstAllocatableIdentity = 256;

}  // namespace

IdentityLiveness::IdentityLiveness(EndpointManager& manager, Options options)
    : manager_(manager),
      options_(std::move(options)),
      channel_(MakeChannelForTargets(options_.identity_service)),
      stub_(identity::v1::IdentityService::NewStub(channel_)) {
  heartbeater_ = std::make_unique<identity::NodeHeartbeater>(
      channel_, identity::NodeHeartbeater::Options{.node = options_.node, .ttl = options_.ttl},
      [this] { ReassertEndpoints(); });
}

IdentityLiveness::~IdentityLiveness() { heartbeater_.reset(); }

void IdentityLiveness::ReassertEndpoints() {
  auto endpoints = manager_.ListEndpoints();
  if (!endpoints.ok()) {
    spdlog::warn("new identity session for node {}: cannot list endpoints: {}", options_.node,
                 endpoints.status().ToString());
    return;
  }
  int reasserted = 0, changed = 0, failed = 0;
  for (const EndpointStatus& endpoint : *endpoints) {
    const EndpointRecord& record = endpoint.record;
    if (record.identity < kFirstAllocatableIdentity) continue;
    // The same request the CNI binary sends at ADD (cni/plugin/commands/
    // add.cc): pods without Kubernetes names are "default"/<container id>.
    identity::v1::ResolvePodRequest request;
    request.set_pod_namespace(record.pod_namespace.empty() ? "default" : record.pod_namespace);
    request.set_pod_name(record.pod_name.empty() ? record.key.container_id : record.pod_name);
    request.mutable_owner()->set_node(options_.node);
    request.mutable_owner()->set_endpoint(absl::StrCat(record.key.container_id, "/", record.key.interface_name));
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(5));
    identity::v1::ResolvePodResponse response;
    grpc::Status status = stub_->ResolvePod(&context, request, &response);
    if (!status.ok()) {
      ++failed;
      spdlog::warn("cannot re-assert the identity of {}/{}: {}", record.key.container_id,
                   record.key.interface_name, status.error_message());
      continue;
    }
    ++reasserted;
    if (response.identity().id() != record.identity) {
      ++changed;
      auto updated = manager_.SetEndpointIdentity(record.key, response.identity().id());
      if (!updated.ok()) {
        spdlog::error("endpoint {}/{}: identity {} -> {} failed: {}", record.key.container_id,
                      record.key.interface_name, record.identity, response.identity().id(),
                      updated.status().ToString());
      }
    }
  }
  spdlog::info("new identity session for node {}: {} reference(s) re-asserted, {} identity change(s), {} failed",
               options_.node, reasserted, changed, failed);
}

}  // namespace ebpfcni::datapath
