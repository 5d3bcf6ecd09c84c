#pragma once
// The CNI binary's view of the datapath service (see ipam_client.h for the
// conventions).
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"

namespace ebpfcni::cni {

class DatapathClient {
 public:
  DatapathClient(std::string target, std::chrono::milliseconds timeout);

  const std::string& target() const { return target_; }

  // Starts connecting in the background (gRPC connects a channel only at
  // its first call), so ADD's CreateEndpoint, which comes after IPAM and
  // the netlink work, finds the connection ready. Never blocks or fails.
  void StartConnecting();

  absl::StatusOr<datapath::v1::Endpoint> CreateEndpoint(const datapath::v1::CreateEndpointRequest& request);
  // Returns whether something was deleted.
  absl::StatusOr<bool> DeleteEndpoint(const std::string& container_id, const std::string& ifname);
  // NOT_FOUND when the datapath does not know the attachment.
  absl::StatusOr<datapath::v1::Endpoint> GetEndpoint(const std::string& container_id, const std::string& ifname);
  // Every endpoint the datapath knows (all networks of the node).
  absl::StatusOr<std::vector<datapath::v1::Endpoint>> ListEndpoints();
  absl::Status CheckHealth();

 private:
  std::string target_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<datapath::v1::DatapathService::Stub> stub_;
};

}  // namespace ebpfcni::cni
