#pragma once
// Client channels to ebpf-cni services. Services listen on unix sockets by
// default; a target may be a bare path ("/run/ebpf-cni/ipam.sock"), a gRPC
// URI ("unix:/run/...", "dns:///host:port") or "host:port".
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

namespace ebpfcni {

// Turns a bare filesystem path into a "unix:" target; leaves URIs alone.
std::string NormalizeTarget(const std::string& target);

// Creates an insecure channel (unix sockets are protected by file mode).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);

// Client-side load balancing over the replicas of one service (e.g. the
// identity service scaled out over etcd).
struct BalancedChannelOptions {
  // Tries per call, the first included (gRPC caps this at 5). A call that
  // fails with UNAVAILABLE (replica died, connection refused) is retried and
  // round_robin sends the retry to another ready replica.
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{20};
  std::chrono::milliseconds max_backoff{500};
};

// A round_robin channel over `targets`: either several unix socket paths
// or several IP host:port addresses (one list, balanced over all), or a
// single target such as "dns:///identity.kube-system.svc:7070" whose every
// resolved address is balanced over. Only use it for idempotent methods:
// calls are retried on UNAVAILABLE, which can repeat one that the dead
// replica had already applied. INVALID_ARGUMENT for an empty list, mixed
// kinds, or several DNS names (resolve them behind one name instead).
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeBalancedChannel(const std::vector<std::string>& targets,
                                                                   const BalancedChannelOptions& options = {});

// A channel for a target the user configured: "a,b,c" (replicas of a
// service) becomes a MakeBalancedChannel over the list, anything else a
// MakeChannel. A list MakeBalancedChannel refuses is logged and the first
// entry used, so the caller's calls fail (or work) with a clear target.
std::shared_ptr<grpc::Channel> MakeChannelForTargets(const std::string& targets);

// Sets a deadline on a client context so no call can hang forever.
void SetDeadline(grpc::ClientContext& context, std::chrono::milliseconds timeout);

}  // namespace ebpfcni
