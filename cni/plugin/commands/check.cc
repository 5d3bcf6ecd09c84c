// CNI CHECK: is the attachment still what ADD reported (prevResult)?
// Looks at the kernel (interface, addresses, routes, host veth), the IPAM
// allocation and the datapath endpoint (attached, with a security identity);
// the first difference is reported
// with code 102 and names what differs.
#include <sys/stat.h>

#include <algorithm>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "cni/plugin/commands/attachment_addresses.h"
#include "cni/plugin/commands/commands.h"
#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

absl::Status Mismatch(absl::string_view message) { return CniStatus(code::kCheckMismatch, message); }

absl::Status CheckPrevResultInterface(const CniResult& prev, const CniEnvironment& env) {
  for (const ResultInterface& iface : prev.interfaces) {
    if (iface.name == env.ifname && !iface.sandbox.empty()) {
      if (iface.sandbox != env.netns) {
        return Mismatch(absl::StrCat("prevResult places ", env.ifname, " in sandbox ", iface.sandbox,
                                     " but CNI_NETNS is ", env.netns));
      }
      return absl::OkStatus();
    }
  }
  return Mismatch(absl::StrCat("prevResult has no interface ", env.ifname, " inside a sandbox"));
}

absl::Status CheckIpam(CommandContext& context, const AttachmentAddresses& expected) {
  const CniEnvironment& env = context.env;
  absl::StatusOr<std::vector<ipam::v1::Allocation>> allocations = context.ipam.ListAllocations(env.container_id);
  if (!allocations.ok()) return allocations.status();
  for (const ipam::v1::Allocation& allocation : *allocations) {
    if (allocation.attachment().container_id() != env.container_id ||
        allocation.attachment().interface_name() != env.ifname) {
      continue;
    }
    absl::StatusOr<AttachmentAddresses> held = FromIpamAssignments(allocation.ips());
    if (!held.ok()) return WithCniCode(held.status(), code::kServiceRejectedRequest);
    if (held->addresses != expected.addresses) {
      return Mismatch(absl::StrCat("IPAM holds ", DescribeAddresses(held->addresses), " for ", env.container_id,
                                   "/", env.ifname, " but prevResult has ", DescribeAddresses(expected.addresses)));
    }
    return absl::OkStatus();
  }
  return Mismatch(absl::StrCat("IPAM has no allocation for ", env.container_id, "/", env.ifname,
                               " but prevResult has ", DescribeAddresses(expected.addresses)));
}

absl::Status CheckDatapath(CommandContext& context, const AttachmentAddresses& expected,
                           const std::string& host_ifname) {
  const CniEnvironment& env = context.env;
  absl::StatusOr<datapath::v1::Endpoint> endpoint = context.datapath.GetEndpoint(env.container_id, env.ifname);
  if (!endpoint.ok()) {
    if (endpoint.status().code() == absl::StatusCode::kNotFound) {
      return Mismatch(absl::StrCat("the datapath has no endpoint for ", env.container_id, "/", env.ifname));
    }
    return endpoint.status();
  }
  if (endpoint->state() != datapath::v1::ATTACHMENT_STATE_ATTACHED) {
    return Mismatch(absl::StrCat("datapath endpoint ", endpoint->endpoint_id(), " for ", env.container_id, "/",
                                 env.ifname, " is ", datapath::v1::AttachmentState_Name(endpoint->state()),
                                 ", not ATTACHMENT_STATE_ATTACHED"));
  }
  if (!endpoint->host_interface_name().empty() && endpoint->host_interface_name() != host_ifname) {
    return Mismatch(absl::StrCat("datapath endpoint is on ", endpoint->host_interface_name(), ", expected ",
                                 host_ifname));
  }
  if (endpoint->identity() == 0) {
    // "init": the datapath drops all its traffic.
    return Mismatch(absl::StrCat("datapath endpoint ", endpoint->endpoint_id(), " for ", env.container_id, "/",
                                 env.ifname, " has no security identity, so all its traffic is dropped"));
  }
  std::vector<IpAddress> addresses;
  for (const std::string& text : endpoint->addresses()) {
    absl::StatusOr<IpAddress> address = IpAddress::Parse(text);
    if (address.ok()) addresses.push_back(*address);
  }
  std::sort(addresses.begin(), addresses.end());
  if (addresses != expected.addresses) {
    return Mismatch(absl::StrCat("datapath endpoint has addresses ", DescribeAddresses(addresses),
                                 " but prevResult has ", DescribeAddresses(expected.addresses)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunCheck(CommandContext& context) {
  const CniEnvironment& env = context.env;
  if (!context.config.prev_result) {
    return CniStatus(code::kInvalidNetworkConfig,
                     "CHECK needs prevResult (the result of ADD) in the network config");
  }
  const CniResult& prev = *context.config.prev_result;
  struct stat st {};
  if (stat(env.netns.c_str(), &st) != 0) {
    return CniStatus(code::kUnknownContainer, absl::StrCat("CNI_NETNS ", env.netns, " does not exist"));
  }
  if (absl::Status s = CheckPrevResultInterface(prev, env); !s.ok()) return s;
  AttachmentAddresses expected = FromPrevResult(prev, env.ifname);
  if (expected.addresses.empty()) {
    return Mismatch(absl::StrCat("prevResult lists no address for ", env.ifname));
  }

  net::PodNetworkSpec spec = PodSpecFor(context, expected);
  // The routes ADD reported decide which layout to expect: a default route
  // (the pod's first interface) or pool routes/none (a later interface).
  spec.routes.emplace();
  for (const ResultRoute& route : prev.routes) {
    if (route.gw) spec.routes->push_back({route.dst, *route.gw});
  }
  if (absl::Status s = context.network.Check(spec); !s.ok()) {
    absl::Status annotated = Annotate(s, absl::StrCat("pod network of ", env.container_id, "/", env.ifname));
    if (s.code() == absl::StatusCode::kFailedPrecondition || s.code() == absl::StatusCode::kNotFound) {
      return WithCniCode(annotated, code::kCheckMismatch);
    }
    return WithCniCode(annotated, code::kHostNetworkFailure);
  }
  if (absl::Status s = CheckIpam(context, expected); !s.ok()) return s;
  if (absl::Status s = CheckDatapath(context, expected, spec.host_ifname); !s.ok()) return s;
  spdlog::info("CHECK {}/{}: ok", env.container_id, env.ifname);
  return absl::OkStatus();
}

}  // namespace ebpfcni::cni
