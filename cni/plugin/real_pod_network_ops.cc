#include "cni/plugin/pod_network_ops.h"

namespace ebpfcni::cni {
namespace {

class RealPodNetworkOps final : public PodNetworkOps {
 public:
  std::string HostVethName(const std::string& prefix, const std::string& container_id,
                           const std::string& container_ifname) override {
    return net::HostVethName(prefix, container_id, container_ifname);
  }
  absl::StatusOr<net::PodNetworkInfo> Setup(const net::PodNetworkSpec& spec) override {
    return net::SetupPodNetwork(spec);
  }
  absl::Status Teardown(const net::PodNetworkSpec& spec) override { return net::TeardownPodNetwork(spec); }
  absl::Status Check(const net::PodNetworkSpec& spec) override { return net::CheckPodNetwork(spec); }
  absl::StatusOr<bool> LinkExistsInNetns(const std::string& netns_path, const std::string& ifname) override {
    return net::LinkExistsInNetns(netns_path, ifname);
  }
};

}  // namespace

std::unique_ptr<PodNetworkOps> MakeRealPodNetworkOps() { return std::make_unique<RealPodNetworkOps>(); }

}  // namespace ebpfcni::cni
