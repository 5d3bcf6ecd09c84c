#pragma once
// The addresses and gateways of one attachment, from wherever they are
// known: an IPAM allocation (ADD, DEL without prevResult) or a prevResult
// (DEL, CHECK). Feeds net::PodNetworkSpec.
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include "cni/plugin/result.h"
#include "common/net/ip_address.h"
#include "ebpfcni/ipam/v1/ipam.pb.h"

namespace ebpfcni::cni {

struct AttachmentAddresses {
  std::vector<IpAddress> addresses;  // sorted
  std::optional<IpAddress> gateway_v4;
  std::optional<IpAddress> gateway_v6;
  // The pools the addresses came from (IPAM only; empty from prevResult).
  std::vector<IpPrefix> pools;
};

// INVALID_ARGUMENT when IPAM returned something that is not an address.
absl::StatusOr<AttachmentAddresses> FromIpamAssignments(
    const google::protobuf::RepeatedPtrField<ipam::v1::IpAssignment>& ips);

// The ips of prevResult that belong to the container interface named
// ifname (those whose "interface" indexes it, or all of them when no ip
// names an interface).
AttachmentAddresses FromPrevResult(const CniResult& result, const std::string& ifname);

std::string DescribeAddresses(const std::vector<IpAddress>& addresses);

}  // namespace ebpfcni::cni
