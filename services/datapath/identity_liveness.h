#pragma once
// Keeps this node's identity references alive while the datapath runs.
//
// The CNI binary takes a reference on each pod's identity at ADD (owner:
// this node + "<container id>/<ifname>"); references hang on the node's
// session with the identity service, which expires unless the node
// heartbeats. The datapath service is the node's long-lived process, so it
// heartbeats, and whenever a heartbeat starts a new session (first start,
// identity service state lost, a partition longer than the TTL) it
// re-asserts the reference of every local endpoint and corrects an endpoint
// whose identity number changed meanwhile.
#include <memory>
#include <string>

#include <absl/time/time.h>

#include "services/datapath/endpoint_manager.h"
#include "services/identity/node_heartbeater.h"

namespace ebpfcni::datapath {

class IdentityLiveness {
 public:
  struct Options {
    // Identity service target (socket path, list or DNS name).
    std::string identity_service;
    // Must match the CNI binary's owner node (gethostname()).
    std::string node;
    absl::Duration ttl = absl::Seconds(15);
  };

  IdentityLiveness(EndpointManager& manager, Options options);
  ~IdentityLiveness();

 private:
  void ReassertEndpoints();

  EndpointManager& manager_;
  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<identity::v1::IdentityService::Stub> stub_;
  std::unique_ptr<identity::NodeHeartbeater> heartbeater_;
};

}  // namespace ebpfcni::datapath
