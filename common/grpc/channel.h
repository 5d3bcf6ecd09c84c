#pragma once
// Client channels to ebpf-cni services. Services listen on unix sockets by
// default; a target may be a bare path ("/run/ebpf-cni/ipam.sock"), a gRPC
// URI ("unix:/run/...", "dns:///host:port") or "host:port".
#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

namespace ebpfcni {

// Turns a bare filesystem path into a "unix:" target; leaves URIs alone.
std::string NormalizeTarget(const std::string& target);

// Creates an insecure channel (unix sockets are protected by file mode).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);

// Sets a deadline on a client context so no call can hang forever.
void SetDeadline(grpc::ClientContext& context, std::chrono::milliseconds timeout);

}  // namespace ebpfcni
