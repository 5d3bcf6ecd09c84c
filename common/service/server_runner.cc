#include "common/service/server_runner.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <absl/status/statusor.h>
#include <absl/strings/str_cat.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>

#include "common/service/health_service.h"

namespace ebpfcni {
namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", what, " \"", path, "\": ", strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(const ListenOptions& listen) {
  if (listen.tls_cert_file.empty() || listen.tls_key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tcp_listen=", listen.tcp_address,
        " needs --tls_cert and --tls_key: ebpf-cni never serves plaintext over TCP"));
  }
  auto cert = ReadFile(listen.tls_cert_file, "TLS certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(listen.tls_key_file, "TLS key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (!listen.tls_client_ca_file.empty()) {
    auto ca = ReadFile(listen.tls_client_ca_file, "TLS client CA");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

absl::Status PrepareSocketPath(const std::string& path) {
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create socket directory ", dir.string(), ": ", ec.message()));
  }
  // A socket left by a killed predecessor would make bind() fail.
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::FailedPreconditionError(absl::StrCat("cannot remove stale socket ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

absl::Status ServeUntilSignal(const ListenOptions& listen, const std::vector<ServedService>& services,
                              const std::function<void()>& on_started) {
  if (listen.unix_socket_path.empty()) {
    return absl::InvalidArgumentError("--socket must name a unix socket path");
  }
  if (auto status = PrepareSocketPath(listen.unix_socket_path); !status.ok()) return status;

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // The socket is created with the process umask; restrict it before anyone
  // can connect, then set the exact mode once it exists.
  mode_t old_umask = umask(0777 & ~listen.socket_mode);
  builder.AddListeningPort("unix:" + listen.unix_socket_path, grpc::InsecureServerCredentials());
  int tcp_port = 0;
  if (!listen.tcp_address.empty()) {
    auto credentials = TlsCredentials(listen);
    if (!credentials.ok()) {
      umask(old_umask);
      return credentials.status();
    }
    builder.AddListeningPort(listen.tcp_address, *credentials, &tcp_port);
  }

  HealthService health;
  health.SetStatus("", grpc::health::v1::HealthCheckResponse::SERVING);
  for (const auto& served : services) {
    builder.RegisterService(served.service);
    health.SetStatus(served.health_name, grpc::health::v1::HealthCheckResponse::SERVING);
  }
  builder.RegisterService(&health);

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (!server) {
    return absl::UnavailableError(absl::StrCat("cannot listen on unix:", listen.unix_socket_path,
                                               listen.tcp_address.empty() ? "" : " or " + listen.tcp_address,
                                               " (address in use or not permitted?)"));
  }
  if (!listen.tcp_address.empty() && tcp_port == 0) {
    server->Shutdown();
    return absl::UnavailableError(absl::StrCat("cannot listen on TCP ", listen.tcp_address));
  }
  chmod(listen.unix_socket_path.c_str(), listen.socket_mode);
  spdlog::info("serving on unix:{} (mode {:o}){}", listen.unix_socket_path, listen.socket_mode,
               listen.tcp_address.empty() ? "" : absl::StrCat(" and TLS ", listen.tcp_address));
  if (on_started) on_started();

  sigset_t set = TerminationSignals();
  int signal_number = 0;
  while (true) {
    if (sigwait(&set, &signal_number) != 0) continue;
    if (signal_number == SIGHUP) {
      spdlog::info("SIGHUP ignored (no reloadable configuration)");
      continue;
    }
    break;
  }
  spdlog::info("received signal {}, shutting down", strsignal(signal_number));
  health.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server->Wait();
  unlink(listen.unix_socket_path.c_str());
  spdlog::info("stopped");
  return absl::OkStatus();
}

}  // namespace ebpfcni
