// CNI ADD.
//
// Order: IPAM Allocate -> SetupPodNetwork -> identity ResolvePod -> datapath
// CreateEndpoint. The address is reserved before anything touches the
// kernel, and the datapath only learns about an interface that exists. The
// endpoint is created with its security identity: an endpoint without one
// is "init" and all its traffic is dropped, so ADD must not return before
// the identity is in the datapath's maps (CreateEndpoint installs it before
// attaching the programs).
//
// Failure handling:
//  - The container interface (or our host veth) already exists: the
//    attachment was added before. Nothing is changed; in particular the IPAM
//    allocation stays, because that existing attachment holds it (only an
//    allocation this call created is given back).
//  - Anything else: undo in reverse order (endpoint, identity reference,
//    network, allocation) so a retried ADD starts from scratch; IPAM hands
//    out the same address again for the same attachment, and the identity
//    service the same identity for the same labels.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <spdlog/spdlog.h>

#include "cni/plugin/cni_args.h"
#include "cni/plugin/commands/attachment_addresses.h"
#include "cni/plugin/commands/commands.h"
#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

// CNI_NETNS must name something that exists; a missing path means the
// container is gone (code 3: the runtime need not clean up).
absl::Status RequireNetnsExists(const std::string& netns) {
  struct stat st {};
  if (stat(netns.c_str(), &st) == 0) return absl::OkStatus();
  int error = errno;
  if (error == ENOENT || error == ENOTDIR) {
    return CniStatus(code::kUnknownContainer,
                     absl::StrCat("CNI_NETNS ", netns, " does not exist; is the container still running?"));
  }
  return CniStatus(code::kIoFailure, absl::StrCat("cannot stat CNI_NETNS ", netns, ": ", std::strerror(error)));
}

// Codes for errors the network layer reports about the netns itself.
absl::Status NetnsError(const absl::Status& status, const std::string& netns) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return WithCniCode(Annotate(status, absl::StrCat("CNI_NETNS ", netns)), code::kUnknownContainer);
    case absl::StatusCode::kInvalidArgument:
      return WithCniCode(Annotate(status, absl::StrCat("CNI_NETNS ", netns)), code::kInvalidEnvironment);
    default:
      return WithCniCode(Annotate(status, "configuring the pod network"), code::kHostNetworkFailure);
  }
}

absl::Status AlreadyExists(const CniEnvironment& env, absl::string_view what) {
  return CniStatus(code::kAttachmentAlreadyExists,
                   absl::StrCat(what, " already exists, so container ", env.container_id, " interface ",
                                env.ifname, " looks added already; nothing was changed. Run DEL for this "
                                "attachment before adding it again, or CHECK to verify it"));
}

class AddTransaction {
 public:
  explicit AddTransaction(CommandContext& context) : context_(context) {}

  absl::StatusOr<CniResult> Run();

 private:
  // ResolvePod for this attachment; errors keep their gRPC code (so an
  // unreachable service is 11).
  absl::StatusOr<identity::v1::Identity> ResolveIdentity(const CniArgs& args);

  // Undoes what this call did; returns a description of what could not be
  // undone (empty when everything was).
  std::string RollBack();

  CommandContext& context_;
  const CniEnvironment& env_ = context_.env;
  const NetworkConfig& config_ = context_.config;

  bool allocated_by_us_ = false;     // IPAM allocation created by this call
  bool network_touched_ = false;     // SetupPodNetwork was attempted
  bool endpoint_attempted_ = false;  // CreateEndpoint was attempted
  uint32_t identity_ = 0;            // identity this call took a reference to
  net::PodNetworkSpec spec_;
};

absl::StatusOr<CniResult> AddTransaction::Run() {
  absl::StatusOr<CniArgs> args = ParseCniArgs(env_.args);
  if (!args.ok()) return args.status();

  if (!config_.runtime_config.unsupported_requests.empty()) {
    return CniStatus(code::kUnsupportedField,
                     absl::StrCat("runtimeConfig asks for ",
                                  absl::StrJoin(config_.runtime_config.unsupported_requests, ", "),
                                  ", which ebpf-cni does not support; remove these capabilities from the "
                                  "conflist entry of \"", config_.type, "\""));
  }

  if (absl::Status s = RequireNetnsExists(env_.netns); !s.ok()) return s;
  absl::StatusOr<bool> exists = context_.network.LinkExistsInNetns(env_.netns, env_.ifname);
  if (!exists.ok()) return NetnsError(exists.status(), env_.netns);
  if (*exists) return AlreadyExists(env_, absl::StrCat("interface ", env_.ifname, " in ", env_.netns));

  ipam::v1::AllocateRequest allocate;
  allocate.mutable_attachment()->set_container_id(env_.container_id);
  allocate.mutable_attachment()->set_interface_name(env_.ifname);
  allocate.set_pod_namespace(args->pod_namespace);
  allocate.set_pod_name(args->pod_name);
  absl::StatusOr<ipam::v1::AllocateResponse> allocation = context_.ipam.Allocate(allocate);
  if (!allocation.ok()) return allocation.status();
  allocated_by_us_ = !allocation->already_allocated();

  absl::StatusOr<AttachmentAddresses> addresses = FromIpamAssignments(allocation->ips());
  if (addresses.ok() && addresses->addresses.empty()) {
    addresses = absl::InvalidArgumentError("IPAM allocated no address (does it have any pool configured?)");
  }
  if (!addresses.ok()) {
    std::string leftover = RollBack();
    return CniStatus(code::kServiceRejectedRequest, addresses.status().message(), leftover);
  }
  spdlog::info("ADD {}/{}: IPAM gave {} ({})", env_.container_id, env_.ifname,
               DescribeAddresses(addresses->addresses), allocated_by_us_ ? "new" : "existing");

  spec_ = PodSpecFor(context_, *addresses);

  absl::StatusOr<net::PodNetworkInfo> info = context_.network.Setup(spec_);
  if (!info.ok()) {
    if (info.status().code() == absl::StatusCode::kAlreadyExists) {
      // Lost a race with another ADD, or a leftover host veth: the existing
      // attachment keeps its allocation; only ours (if new) is returned.
      std::string leftover;
      if (allocated_by_us_) {
        if (auto released = context_.ipam.Release(env_.container_id, env_.ifname); !released.ok()) {
          leftover = absl::StrCat("could not release the address just allocated: ", released.status().message());
        }
      }
      absl::Status status = AlreadyExists(
          env_, absl::StrCat("interface ", env_.ifname, " in ", env_.netns, " or host veth ", spec_.host_ifname));
      return CniStatus(code::kAttachmentAlreadyExists,
                       absl::StrCat(status.message(), " (", info.status().message(), ")"), leftover);
    }
    network_touched_ = true;
    absl::Status status = NetnsError(info.status(), env_.netns);
    std::string leftover = RollBack();
    return CniStatus(CniCodeFor(status), status.message(), leftover);
  }
  network_touched_ = true;
  spdlog::info("ADD {}/{}: host veth {} (ifindex {}) <-> {} in {}", env_.container_id, env_.ifname,
               spec_.host_ifname, info->host_ifindex, env_.ifname, env_.netns);

  absl::StatusOr<identity::v1::Identity> identity = ResolveIdentity(*args);
  if (!identity.ok()) {
    std::string leftover = RollBack();
    return CniStatus(CniCodeFor(identity.status()), identity.status().message(), leftover);
  }
  identity_ = identity->id();
  spdlog::info("ADD {}/{}: security identity {}", env_.container_id, env_.ifname, identity_);

  datapath::v1::CreateEndpointRequest create;
  create.mutable_key()->set_container_id(env_.container_id);
  create.mutable_key()->set_interface_name(env_.ifname);
  create.set_host_ifindex(static_cast<uint32_t>(info->host_ifindex));
  create.set_host_interface_name(spec_.host_ifname);
  create.set_netns_path(env_.netns);
  for (const IpAddress& address : spec_.addresses) create.add_addresses(address.ToString());
  create.set_pod_namespace(args->pod_namespace);
  create.set_pod_name(args->pod_name);
  create.set_identity(identity_);
  endpoint_attempted_ = true;
  absl::StatusOr<datapath::v1::Endpoint> endpoint = context_.datapath.CreateEndpoint(create);
  if (!endpoint.ok()) {
    std::string leftover = RollBack();
    return CniStatus(CniCodeFor(endpoint.status()), endpoint.status().message(), leftover);
  }
  spdlog::info("ADD {}/{}: datapath endpoint {} attached with identity {}", env_.container_id, env_.ifname,
               endpoint->endpoint_id(), endpoint->identity());

  CniResult result;
  result.interfaces.push_back({spec_.host_ifname, info->host_mac, "", config_.mtu});
  result.interfaces.push_back({env_.ifname, info->container_mac, env_.netns, config_.mtu});
  constexpr int kPodInterfaceIndex = 1;
  for (const IpAddress& address : spec_.addresses) {
    const std::optional<IpAddress>& gateway = address.is_v4() ? spec_.gateway_v4 : spec_.gateway_v6;
    result.ips.push_back({IpPrefix(address, address.max_prefix_length()), gateway, kPodInterfaceIndex});
  }
  // One default route per family, in the order of the addresses.
  for (const IpAddress& address : spec_.addresses) {
    const std::optional<IpAddress>& gateway = address.is_v4() ? spec_.gateway_v4 : spec_.gateway_v6;
    if (!gateway) continue;
    IpPrefix default_route(IpAddress::FromNumber(address.family(), 0), 0);
    bool seen = false;
    for (const ResultRoute& route : result.routes) seen = seen || route.dst == default_route;
    if (!seen) result.routes.push_back({default_route, gateway});
  }
  return result;
}

absl::StatusOr<identity::v1::Identity> AddTransaction::ResolveIdentity(const CniArgs& args) {
  identity::v1::ResolvePodRequest request;
  // Runtimes outside Kubernetes (podman, ctr, nerdctl without CRI) send no
  // K8S_POD_* keys: such a container is a pod of its own in "default".
  request.set_pod_namespace(args.pod_namespace.empty() ? "default" : args.pod_namespace);
  request.set_pod_name(args.pod_name.empty() ? env_.container_id : args.pod_name);
  // No labels yet: the CNI only knows namespace and name. The identity
  // service's cluster-state source (a later issue) will look the pod's
  // labels up; until then every pod of a namespace shares that namespace's
  // identity.
  *request.mutable_owner() = IdentityOwnerFor(env_);
  absl::StatusOr<identity::v1::Identity> identity = context_.identity.ResolvePod(request);
  if (!identity.ok()) {
    // Out of identities is not an IPAM pool being full (100).
    if (identity.status().code() == absl::StatusCode::kResourceExhausted) {
      return WithCniCode(identity.status(), code::kServiceRejectedRequest);
    }
    return identity.status();
  }
  if (identity->id() == 0) {
    return WithCniCode(absl::InvalidArgumentError(absl::StrCat(
                           "identity service at ", context_.identity.target(), " resolved pod ",
                           request.pod_namespace(), "/", request.pod_name(), " to identity 0 (none)")),
                       code::kServiceRejectedRequest);
  }
  return identity;
}

std::string RollBackStep(const absl::Status& status, absl::string_view step) {
  if (status.ok()) return "";
  spdlog::error("ADD rollback: {} failed: {}", std::string(step), std::string(status.message()));
  return absl::StrCat(step, " failed: ", status.message(), "; ");
}

std::string AddTransaction::RollBack() {
  std::string leftover;
  if (endpoint_attempted_) {
    leftover += RollBackStep(context_.datapath.DeleteEndpoint(env_.container_id, env_.ifname).status(),
                             "deleting the datapath endpoint");
  }
  if (identity_ >= kFirstAllocatableIdentity) {
    leftover += RollBackStep(context_.identity.ReleaseIdentity(identity_, IdentityOwnerFor(env_)).status(),
                             absl::StrCat("releasing identity ", identity_));
  }
  if (network_touched_) {
    leftover += RollBackStep(context_.network.Teardown(spec_), "removing the pod network");
  }
  // An allocation this attachment already held before this call is given
  // back too: the interface did not exist (checked above), so nothing uses
  // it, and a retried ADD gets the same address anyway.
  leftover += RollBackStep(context_.ipam.Release(env_.container_id, env_.ifname).status(),
                           "releasing the IPAM allocation");
  if (!leftover.empty()) {
    leftover += "run DEL for this attachment (or wait for CNI GC) to clean up";
  }
  return leftover;
}

}  // namespace

absl::StatusOr<CniResult> RunAdd(CommandContext& context) {
  // Failures are logged once, with their CNI code, by the dispatcher.
  AddTransaction transaction(context);
  return transaction.Run();
}

}  // namespace ebpfcni::cni
