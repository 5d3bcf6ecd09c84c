#include "common/service/service_flags.h"

#include <cstdlib>

#include <absl/flags/flag.h>

ABSL_FLAG(std::string, socket, "", "Unix socket to serve on (default: the service's socket under /run/ebpf-cni)");
ABSL_FLAG(std::string, socket_mode, "0660", "Octal file mode of the unix socket (owner root)");
ABSL_FLAG(std::string, tcp_listen, "", "Optional TCP listener host:port; requires --tls_cert and --tls_key");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate for --tcp_listen");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tcp_listen");
ABSL_FLAG(std::string, tls_client_ca, "", "PEM CA; when set, TCP clients must present a certificate it signed");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn or error");
ABSL_FLAG(bool, log_json, false, "Log one JSON object per line instead of text");
ABSL_FLAG(std::string, log_file, "", "Log to this file instead of stderr");

namespace ebpfcni {

ListenOptions ListenOptionsFromFlags(const std::string& default_socket) {
  ListenOptions options;
  options.unix_socket_path = absl::GetFlag(FLAGS_socket);
  if (options.unix_socket_path.empty()) options.unix_socket_path = default_socket;
  options.socket_mode = static_cast<mode_t>(std::strtoul(absl::GetFlag(FLAGS_socket_mode).c_str(), nullptr, 8));
  // Never world-accessible: whoever reaches the socket controls pod networking.
  options.socket_mode &= 0770;
  if (options.socket_mode == 0) options.socket_mode = 0600;
  options.tcp_address = absl::GetFlag(FLAGS_tcp_listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  return options;
}

LogOptions LogOptionsFromFlags() {
  LogOptions options;
  options.level = absl::GetFlag(FLAGS_log_level);
  options.json = absl::GetFlag(FLAGS_log_json);
  options.file = absl::GetFlag(FLAGS_log_file);
  return options;
}

}  // namespace ebpfcni
