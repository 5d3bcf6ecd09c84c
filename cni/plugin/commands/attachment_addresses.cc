#include "cni/plugin/commands/attachment_addresses.h"

#include <algorithm>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

namespace ebpfcni::cni {
namespace {

void AddGateway(AttachmentAddresses& out, const IpAddress& gateway) {
  if (gateway.is_v4()) {
    if (!out.gateway_v4) out.gateway_v4 = gateway;
  } else if (!out.gateway_v6) {
    out.gateway_v6 = gateway;
  }
}

}  // namespace

absl::StatusOr<AttachmentAddresses> FromIpamAssignments(
    const google::protobuf::RepeatedPtrField<ipam::v1::IpAssignment>& ips) {
  AttachmentAddresses out;
  for (const ipam::v1::IpAssignment& ip : ips) {
    absl::StatusOr<IpAddress> address = IpAddress::Parse(ip.address());
    if (!address.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("IPAM returned an invalid address \"", ip.address(), "\" from pool ", ip.pool()));
    }
    out.addresses.push_back(*address);
    const int max_length = address->max_prefix_length();
    if (ip.pool_prefix_length() > 0 && static_cast<int>(ip.pool_prefix_length()) < max_length) {
      IpPrefix pool(*address, static_cast<int>(ip.pool_prefix_length()));
      out.pools.push_back(IpPrefix(pool.Network(), pool.length()));
    }
    if (!ip.gateway().empty()) {
      absl::StatusOr<IpAddress> gateway = IpAddress::Parse(ip.gateway());
      if (!gateway.ok() || gateway->family() != address->family()) {
        return absl::InvalidArgumentError(
            absl::StrCat("IPAM returned an invalid gateway \"", ip.gateway(), "\" for ", ip.address()));
      }
      AddGateway(out, *gateway);
    }
  }
  std::sort(out.addresses.begin(), out.addresses.end());
  return out;
}

AttachmentAddresses FromPrevResult(const CniResult& result, const std::string& ifname) {
  const bool any_indexed =
      std::any_of(result.ips.begin(), result.ips.end(), [](const ResultIp& ip) { return ip.interface.has_value(); });
  AttachmentAddresses out;
  for (const ResultIp& ip : result.ips) {
    if (any_indexed) {
      if (!ip.interface) continue;
      const ResultInterface& iface = result.interfaces[*ip.interface];
      if (iface.name != ifname || iface.sandbox.empty()) continue;
    }
    out.addresses.push_back(ip.address.address());
    if (ip.gateway && ip.gateway->family() == ip.address.family()) AddGateway(out, *ip.gateway);
  }
  std::sort(out.addresses.begin(), out.addresses.end());
  return out;
}

std::string DescribeAddresses(const std::vector<IpAddress>& addresses) {
  if (addresses.empty()) return "[]";
  return absl::StrCat("[", absl::StrJoin(addresses, ", ", [](std::string* out, const IpAddress& a) {
                        out->append(a.ToString());
                      }), "]");
}

}  // namespace ebpfcni::cni
