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
    // Re-take the reference on the identity the endpoint has, by its label
    // set: the datapath does not know the pod's labels (the CNI or the
    // policy agent resolved them), but the identity service does. Resolving
    // the pod again by name would give a label-less identity and flip the
    // endpoint to another policy until the agent corrected it.
    const std::string owner_endpoint = absl::StrCat(record.key.container_id, "/", record.key.interface_name);
    identity::v1::GetIdentityRequest get;
    get.set_id(record.identity);
    identity::v1::GetIdentityResponse got;
    grpc::ClientContext get_context;
    SetDeadline(get_context, std::chrono::seconds(5));
    grpc::Status status = stub_->GetIdentity(&get_context, get, &got);
    if (!status.ok()) {
      ++failed;
      spdlog::warn("cannot re-assert identity {} of {}: {}{}", record.identity, owner_endpoint,
                   status.error_message(),
                   status.error_code() == grpc::StatusCode::NOT_FOUND
                       ? " (it was collected while this node had no session; the policy agent re-resolves the pod)"
                       : "");
      continue;
    }
    identity::v1::AllocateIdentityRequest request;
    *request.mutable_labels() = got.identity().labels();
    request.mutable_owner()->set_node(options_.node);
    request.mutable_owner()->set_endpoint(owner_endpoint);
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(5));
    identity::v1::AllocateIdentityResponse response;
    status = stub_->AllocateIdentity(&context, request, &response);
    if (!status.ok()) {
      ++failed;
      spdlog::warn("cannot re-assert identity {} of {}: {}", record.identity, owner_endpoint, status.error_message());
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
