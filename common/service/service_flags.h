#pragma once
// Command-line flags every ebpf-cni service shares (absl flags):
//   --socket=PATH         unix socket to listen on (the default listener)
//   --socket_mode=0660    file mode of that socket (owner root)
//   --tcp_listen=ADDR     optional TCP listener, host:port; requires TLS
//   --tls_cert, --tls_key server certificate and key (PEM) for TCP
//   --tls_client_ca       when set, clients must present a cert signed by it
//   --log_level, --log_json, --log_file
#include "common/log/logging.h"
#include "common/service/server_runner.h"

namespace ebpfcni {

// Reads the listener flags. default_socket is used when --socket is unset.
ListenOptions ListenOptionsFromFlags(const std::string& default_socket);
LogOptions LogOptionsFromFlags();

}  // namespace ebpfcni
