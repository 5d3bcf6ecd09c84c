#pragma once
// Follows the datapath's WatchEndpoints stream: the node's endpoints (one
// snapshot, delivered as one step), then creations, updates and deletions.
// Every reconnect starts with a fresh snapshot, so endpoints that went away
// while the stream was down are noticed.
#include <functional>
#include <memory>
#include <vector>

#include <grpcpp/channel.h>

#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "services/policy/agent/stream_follower.h"

namespace ebpfcni::policy {

class EndpointWatcher final : public StreamFollower {
 public:
  struct Callbacks {
    // Every endpoint of the node now; the receiver forgets any other.
    std::function<void(std::vector<datapath::v1::Endpoint>)> on_snapshot;
    std::function<void(const datapath::v1::Endpoint&)> on_upsert;
    std::function<void(const datapath::v1::EndpointKey&)> on_delete;
  };

  EndpointWatcher(std::shared_ptr<grpc::Channel> channel, Callbacks callbacks);
  ~EndpointWatcher() override { Stop(); }

 private:
  grpc::Status FollowOnce(grpc::ClientContext& context, bool* progressed) override;

  std::unique_ptr<datapath::v1::DatapathService::Stub> stub_;
  Callbacks callbacks_;
};

}  // namespace ebpfcni::policy
