// CNI ADD.
//
// Order:
//   pre-check (the interface must not exist yet)
//   then, at the same time:
//     - this thread:   IPAM Allocate -> SetupPodNetwork
//     - second thread: the pod's security identity (and, with policySocket,
//                      its initial policy): identity ResolvePod, or policy
//                      agent ResolveEndpoint
//   then datapath CreateEndpoint with identity and policy.
// Neither side needs the other's result, and each is a round trip to a
// daemon that writes to disk, so running them side by side takes the
// shorter one off the pod start path. The address is reserved before
// anything touches the kernel, and the datapath only learns about an
// interface that exists. The endpoint is created with its security identity
// (and policy): an endpoint without an identity is "init" and all its
// traffic is dropped, so ADD must not return before the identity is in the
// datapath's maps (CreateEndpoint installs it, and the policy, before
// attaching the programs).
//
// Failure handling:
//  - The container interface already exists (pre-check): the attachment was
//    added before. Nothing is changed and nothing is asked of any service:
//    the existing attachment keeps its allocation and identity reference.
//  - SetupPodNetwork finds the interface or our host veth (a race with
//    another ADD, or a leftover veth): an allocation this call created is
//    given back, an existing one stays. The identity reference is per owner
//    (node, "<container id>/<ifname>"), so the one this call resolved is the
//    very reference an existing attachment holds: it is dropped only when
//    the datapath has no endpoint holding that identity for the attachment.
//  - Anything else: undo in reverse order (endpoint, identity reference,
//    network, allocation) so a retried ADD starts from scratch; IPAM hands
//    out the same address again for the same attachment, and the identity
//    service the same identity for the same labels. The resolution thread is
//    always joined first, so a reference it took is never left behind (nor
//    dropped when it took none).
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <optional>

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

// Milliseconds since start, for the per-step log lines (the CNI latency
// benchmark reads them to tell the steps apart).
double MillisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// What the pod's endpoint is created with.
struct ResolvedEndpoint {
  uint32_t identity = 0;
  // Set when the policy agent resolved the pod; nullopt: no policy (not
  // isolated), as without an agent.
  std::optional<datapath::v1::EndpointPolicy> policy;
  bool pod_known = false;  // policy agent: labels came from a Pod object
};

// A policy that isolates neither direction and asks for no events is what
// a new endpoint without policy has already, so CreateEndpoint gets none and
// the datapath skips installing (and persisting) an empty rule set: the
// common case, a pod no NetworkPolicy selects, costs nothing extra. The
// agent keeps the endpoint's policy up to date from then on.
bool AllowsEverything(const datapath::v1::EndpointPolicy& policy) {
  return !policy.ingress_isolated() && !policy.egress_isolated() && policy.rules_size() == 0 &&
         !policy.verdict_events();
}

class AddTransaction {
 public:
  explicit AddTransaction(CommandContext& context) : context_(context) {}

  absl::StatusOr<CniResult> Run();

 private:
  // Starts resolving the pod's identity (and policy) on another thread.
  void StartResolution(const CniArgs& args);
  // Waits for the resolution started above; records the identity whose
  // reference this call now holds. Idempotent.
  const absl::StatusOr<ResolvedEndpoint>& JoinResolution();
  // Identity ResolvePod (no policySocket) or policy agent ResolveEndpoint.
  // Errors keep their gRPC code (so an unreachable service is 11).
  absl::StatusOr<ResolvedEndpoint> Resolve(const CniArgs& args) const;
  absl::StatusOr<ResolvedEndpoint> ResolveWithIdentityService(const std::string& pod_namespace,
                                                              const std::string& pod_name) const;
  absl::StatusOr<ResolvedEndpoint> ResolveWithPolicyAgent(const std::string& pod_namespace,
                                                          const std::string& pod_name) const;

  // SetupPodNetwork found the attachment's interface or host veth.
  absl::Status LostRace(const absl::Status& setup_error);

  // Undoes what this call did; returns a description of what could not be
  // undone (empty when everything was).
  std::string RollBack();

  CommandContext& context_;
  const CniEnvironment& env_ = context_.env;
  const NetworkConfig& config_ = context_.config;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();

  std::future<absl::StatusOr<ResolvedEndpoint>> pending_resolution_;
  std::optional<absl::StatusOr<ResolvedEndpoint>> resolution_;

  bool allocated_ = false;           // IPAM Allocate answered with addresses
  bool allocated_by_us_ = false;     // ... and the allocation is new
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

  StartResolution(*args);
  context_.datapath.StartConnecting();

  ipam::v1::AllocateRequest allocate;
  allocate.mutable_attachment()->set_container_id(env_.container_id);
  allocate.mutable_attachment()->set_interface_name(env_.ifname);
  allocate.set_pod_namespace(args->pod_namespace);
  allocate.set_pod_name(args->pod_name);
  // Recorded so that this network's GC leaves other networks' attachments
  // on the node alone (gc.cc).
  allocate.set_network_name(config_.name);
  absl::StatusOr<ipam::v1::AllocateResponse> allocation = context_.ipam.Allocate(allocate);
  if (!allocation.ok()) {
    // Nothing was allocated; the identity reference (if taken) goes back.
    std::string leftover = RollBack();
    return CniStatus(CniCodeFor(allocation.status()), allocation.status().message(), leftover);
  }
  allocated_ = true;
  allocated_by_us_ = !allocation->already_allocated();

  absl::StatusOr<AttachmentAddresses> addresses = FromIpamAssignments(allocation->ips());
  if (addresses.ok() && addresses->addresses.empty()) {
    addresses = absl::InvalidArgumentError("IPAM allocated no address (does it have any pool configured?)");
  }
  if (!addresses.ok()) {
    std::string leftover = RollBack();
    return CniStatus(code::kServiceRejectedRequest, addresses.status().message(), leftover);
  }
  spdlog::info("ADD {}/{}: IPAM gave {} ({}) at {:.1f} ms", env_.container_id, env_.ifname,
               DescribeAddresses(addresses->addresses), allocated_by_us_ ? "new" : "existing",
               MillisecondsSince(start_));

  spec_ = PodSpecFor(context_, *addresses);

  absl::StatusOr<net::PodNetworkInfo> info = context_.network.Setup(spec_);
  if (!info.ok()) {
    if (info.status().code() == absl::StatusCode::kAlreadyExists) return LostRace(info.status());
    network_touched_ = true;
    absl::Status status = NetnsError(info.status(), env_.netns);
    std::string leftover = RollBack();
    return CniStatus(CniCodeFor(status), status.message(), leftover);
  }
  network_touched_ = true;
  spdlog::info("ADD {}/{}: host veth {} (ifindex {}) <-> {} in {} at {:.1f} ms", env_.container_id, env_.ifname,
               spec_.host_ifname, info->host_ifindex, env_.ifname, env_.netns, MillisecondsSince(start_));

  const absl::StatusOr<ResolvedEndpoint>& resolved = JoinResolution();
  if (!resolved.ok()) {
    absl::Status status = resolved.status();
    std::string leftover = RollBack();
    return CniStatus(CniCodeFor(status), status.message(), leftover);
  }

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
  // The bandwidth plugin shapes what the pod sends through an `ingress`
  // qdisc on the host veth, which clsact would block: TCX links leave the
  // qdiscs free. Other pods take the node's default (cheaper to attach).
  if (config_.runtime_config.LimitsPodEgress()) {
    create.set_tc_attach_mode(datapath::v1::TC_ATTACH_MODE_TCX);
  }
  if (resolved->policy && !AllowsEverything(*resolved->policy)) *create.mutable_policy() = *resolved->policy;
  endpoint_attempted_ = true;
  absl::StatusOr<datapath::v1::Endpoint> endpoint = context_.datapath.CreateEndpoint(create);
  if (!endpoint.ok()) {
    std::string leftover = RollBack();
    return CniStatus(CniCodeFor(endpoint.status()), endpoint.status().message(), leftover);
  }
  spdlog::info("ADD {}/{}: datapath endpoint {} attached with identity {}{} at {:.1f} ms", env_.container_id,
               env_.ifname, endpoint->endpoint_id(), endpoint->identity(),
               resolved->policy ? absl::StrCat(" and ", resolved->policy->rules_size(), " policy rules") : "",
               MillisecondsSince(start_));

  CniResult result;
  result.interfaces.push_back({spec_.host_ifname, info->host_mac, "", config_.mtu});
  result.interfaces.push_back({env_.ifname, info->container_mac, env_.netns, config_.mtu});
  constexpr int kPodInterfaceIndex = 1;
  for (const IpAddress& address : spec_.addresses) {
    const std::optional<IpAddress>& gateway = address.is_v4() ? spec_.gateway_v4 : spec_.gateway_v6;
    result.ips.push_back({IpPrefix(address, address.max_prefix_length()), gateway, kPodInterfaceIndex});
  }
  // What the network layer routed through this interface: a default route
  // per family for the pod's first interface, pool routes (or none) for a
  // later one (pod_network.h).
  for (const net::PodRoute& route : info->routes) result.routes.push_back({route.destination, route.gateway});
  return result;
}

void AddTransaction::StartResolution(const CniArgs& args) {
  // The thread only reads the context (clients are thread-safe) and args,
  // both of which outlive it: JoinResolution() runs on every path out of
  // Run() after this point, and the future's destructor would wait anyway.
  pending_resolution_ = std::async(std::launch::async, [this, args] {
    absl::StatusOr<ResolvedEndpoint> resolved = Resolve(args);
    // Logged here, when it finished, not when it is joined: the per-step
    // times show which side of ADD waited for the other.
    if (resolved.ok()) {
      spdlog::info("ADD {}/{}: security identity {}{} at {:.1f} ms", env_.container_id, env_.ifname,
                   resolved->identity,
                   resolved->policy ? absl::StrCat(", policy of ", resolved->policy->rules_size(), " rules (pod ",
                                                   resolved->pod_known ? "known" : "not in the cluster state", ")")
                                    : "",
                   MillisecondsSince(start_));
    }
    return resolved;
  });
}

const absl::StatusOr<ResolvedEndpoint>& AddTransaction::JoinResolution() {
  if (!resolution_) {
    resolution_.emplace(pending_resolution_.valid() ? pending_resolution_.get()
                                                    : absl::InternalError("pod identity resolution never started"));
    if (resolution_->ok()) identity_ = (*resolution_)->identity;
  }
  return *resolution_;
}

absl::StatusOr<ResolvedEndpoint> AddTransaction::Resolve(const CniArgs& args) const {
  // Runtimes outside Kubernetes (podman, ctr, nerdctl without CRI) send no
  // K8S_POD_* keys: such a container is a pod of its own in "default".
  const std::string pod_namespace = args.pod_namespace.empty() ? "default" : args.pod_namespace;
  const std::string pod_name = args.pod_name.empty() ? env_.container_id : args.pod_name;
  absl::StatusOr<ResolvedEndpoint> resolved = context_.policy != nullptr
                                                  ? ResolveWithPolicyAgent(pod_namespace, pod_name)
                                                  : ResolveWithIdentityService(pod_namespace, pod_name);
  if (!resolved.ok()) {
    switch (resolved.status().code()) {
      // Out of identities is not an IPAM pool being full (100), and a
      // precondition the service checks is not a CHECK mismatch (102).
      case absl::StatusCode::kResourceExhausted:
      case absl::StatusCode::kFailedPrecondition:
        return WithCniCode(resolved.status(), code::kServiceRejectedRequest);
      default:
        return resolved.status();
    }
  }
  if (resolved->identity == 0) {
    return WithCniCode(
        absl::InvalidArgumentError(absl::StrCat(
            context_.policy != nullptr ? "policy agent at " : "identity service at ",
            context_.policy != nullptr ? context_.policy->target() : context_.identity.target(), " resolved pod ",
            pod_namespace, "/", pod_name, " to identity 0 (none)")),
        code::kServiceRejectedRequest);
  }
  return resolved;
}

absl::StatusOr<ResolvedEndpoint> AddTransaction::ResolveWithIdentityService(const std::string& pod_namespace,
                                                                            const std::string& pod_name) const {
  identity::v1::ResolvePodRequest request;
  request.set_pod_namespace(pod_namespace);
  request.set_pod_name(pod_name);
  // No labels: the CNI only knows namespace and name. Without the policy
  // agent (which reads the Pod objects) every pod of a namespace shares
  // that namespace's identity.
  *request.mutable_owner() = IdentityOwnerFor(env_);
  absl::StatusOr<identity::v1::Identity> identity = context_.identity.ResolvePod(request);
  if (!identity.ok()) return identity.status();
  ResolvedEndpoint resolved;
  resolved.identity = identity->id();
  return resolved;
}

absl::StatusOr<ResolvedEndpoint> AddTransaction::ResolveWithPolicyAgent(const std::string& pod_namespace,
                                                                        const std::string& pod_name) const {
  policy::v1::ResolveEndpointRequest request;
  request.mutable_key()->set_container_id(env_.container_id);
  request.mutable_key()->set_interface_name(env_.ifname);
  request.set_pod_namespace(pod_namespace);
  request.set_pod_name(pod_name);
  // The agent takes the labels from the Pod object (and its Namespace);
  // the CNI has none to fall back on.
  *request.mutable_owner() = IdentityOwnerFor(env_);
  absl::StatusOr<policy::v1::ResolveEndpointResponse> response = context_.policy->ResolveEndpoint(request);
  if (!response.ok()) return response.status();
  // An agent that sends no policy means "no policy": not isolated, which
  // is also what an EndpointPolicy with nothing set says.
  ResolvedEndpoint resolved;
  resolved.identity = response->identity().id();
  resolved.policy = response->policy();
  resolved.pod_known = response->pod_known();
  return resolved;
}

absl::Status AddTransaction::LostRace(const absl::Status& setup_error) {
  // Lost a race with another ADD, or a leftover host veth: the existing
  // attachment keeps its allocation; only ours (if new) is returned.
  std::string leftover;
  if (allocated_by_us_) {
    if (auto released = context_.ipam.Release(env_.container_id, env_.ifname); !released.ok()) {
      leftover = absl::StrCat("could not release the address just allocated: ", released.status().message(), "; ");
    }
  }
  // The reference resolved for this owner is the one an existing
  // attachment holds (references are per owner, not per call): keep it when
  // the datapath has an endpoint for the attachment with that identity,
  // drop it otherwise (no attachment holds it; it is ours alone).
  if (JoinResolution().ok() && identity_ >= kFirstAllocatableIdentity) {
    absl::StatusOr<datapath::v1::Endpoint> existing = context_.datapath.GetEndpoint(env_.container_id, env_.ifname);
    if (existing.ok() && existing->identity() == identity_) {
      spdlog::info("ADD {}/{}: endpoint exists with identity {}; its reference stays", env_.container_id,
                   env_.ifname, identity_);
    } else if (existing.ok() || existing.status().code() == absl::StatusCode::kNotFound) {
      if (auto released = context_.identity.ReleaseIdentity(identity_, IdentityOwnerFor(env_)); !released.ok()) {
        leftover += absl::StrCat("could not release identity ", identity_, ": ", released.status().message(), "; ");
      }
    } else {
      leftover += absl::StrCat("identity ", identity_, " reference kept: cannot tell whether the existing endpoint "
                               "holds it (", existing.status().message(), "); ");
    }
  }
  if (!leftover.empty()) leftover += "DEL of this attachment cleans up";
  absl::Status status = AlreadyExists(
      env_, absl::StrCat("interface ", env_.ifname, " in ", env_.netns, " or host veth ", spec_.host_ifname));
  return CniStatus(code::kAttachmentAlreadyExists,
                   absl::StrCat(status.message(), " (", setup_error.message(), ")"), leftover);
}

std::string RollBackStep(const absl::Status& status, absl::string_view step) {
  if (status.ok()) return "";
  spdlog::error("ADD rollback: {} failed: {}", std::string(step), std::string(status.message()));
  return absl::StrCat(step, " failed: ", status.message(), "; ");
}

std::string AddTransaction::RollBack() {
  // The resolution may still be running: wait for it, so a reference it
  // takes is released below instead of leaking.
  JoinResolution();
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
  // A failed Allocate took nothing (as far as we know), so nothing is
  // released: an address this call did not take is never given back.
  if (allocated_) {
    leftover += RollBackStep(context_.ipam.Release(env_.container_id, env_.ifname).status(),
                             "releasing the IPAM allocation");
  }
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
