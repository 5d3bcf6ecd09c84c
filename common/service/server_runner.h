#pragma once
// Runs a gRPC daemon the way every ebpf-cni service runs: a unix socket
// listener (mode-restricted) and optionally a TLS-only TCP listener, server
// reflection, grpc.health.v1 reporting SERVING for "" and every hosted
// service, and a clean stop on SIGTERM/SIGINT.
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <grpcpp/impl/codegen/service_type.h>

namespace ebpfcni {

struct ListenOptions {
  std::string unix_socket_path;
  mode_t socket_mode = 0660;
  // Empty: no TCP listener.
  std::string tcp_address;
  std::string tls_cert_file;
  std::string tls_key_file;
  // When set, TCP clients must present a certificate signed by this CA.
  std::string tls_client_ca_file;
};

struct ServedService {
  grpc::Service* service;
  // Fully-qualified name for health checks, e.g. "ebpfcni.ipam.v1.IpamService".
  std::string health_name;
};

// Blocks SIGTERM/SIGINT/SIGHUP in the calling thread. Call first thing in
// main(), before any thread exists, so every thread inherits the mask and
// ServeUntilSignal can collect the signal with sigwait.
void BlockTerminationSignals();

// Serves until SIGTERM or SIGINT, then shuts down (in-flight calls get a few
// seconds) and removes the socket file. Returns an error when a listener
// cannot be set up (bad TLS files, socket dir not creatable, port in use).
// on_started runs once the server accepts calls.
absl::Status ServeUntilSignal(const ListenOptions& listen,
                              const std::vector<ServedService>& services,
                              const std::function<void()>& on_started = {});

}  // namespace ebpfcni
