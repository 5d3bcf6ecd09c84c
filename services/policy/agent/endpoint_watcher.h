#pragma once
// Follows the datapath's WatchEndpoints stream: the node's endpoints (one
// snapshot, delivered as one step), then creations, updates and deletions.
// Every reconnect starts with a fresh snapshot, so endpoints that went away
// while the stream was down are noticed.
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"

namespace ebpfcni::policy {

class EndpointWatcher {
 public:
  struct Callbacks {
    // Every endpoint of the node now; the receiver forgets any other.
    std::function<void(std::vector<datapath::v1::Endpoint>)> on_snapshot;
    std::function<void(const datapath::v1::Endpoint&)> on_upsert;
    std::function<void(const datapath::v1::EndpointKey&)> on_delete;
  };

  EndpointWatcher(std::shared_ptr<grpc::Channel> channel, Callbacks callbacks);
  ~EndpointWatcher();

  void Start();
  void Stop();  // cancels the stream and joins; idempotent

 private:
  void Run();
  grpc::Status WatchOnce(bool* got_snapshot);

  std::unique_ptr<datapath::v1::DatapathService::Stub> stub_;
  Callbacks callbacks_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  grpc::ClientContext* active_ = nullptr;
  std::thread thread_;
};

}  // namespace ebpfcni::policy
