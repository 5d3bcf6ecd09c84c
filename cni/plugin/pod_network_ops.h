#pragma once
// The network layer the commands use, behind an interface so the command
// flow (ordering, rollback, error codes) is unit-testable without netlink.
// The real implementation (real_pod_network_ops.cc, linked only into the
// ebpf-cni binary) delegates to cni/net/pod_network.h.
#include <memory>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "cni/net/pod_network.h"

namespace ebpfcni::cni {

class PodNetworkOps {
 public:
  virtual ~PodNetworkOps() = default;
  virtual std::string HostVethName(const std::string& prefix, const std::string& container_id,
                                   const std::string& container_ifname) = 0;
  virtual absl::StatusOr<net::PodNetworkInfo> Setup(const net::PodNetworkSpec& spec) = 0;
  virtual absl::Status Teardown(const net::PodNetworkSpec& spec) = 0;
  virtual absl::Status Check(const net::PodNetworkSpec& spec) = 0;
  virtual absl::StatusOr<bool> LinkExistsInNetns(const std::string& netns_path, const std::string& ifname) = 0;
};

// Delegates to ebpfcni::net (defined in real_pod_network_ops.cc).
std::unique_ptr<PodNetworkOps> MakeRealPodNetworkOps();

}  // namespace ebpfcni::cni
