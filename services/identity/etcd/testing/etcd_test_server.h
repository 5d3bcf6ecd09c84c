#pragma once
// A real etcd (Debian's etcd-server) for tests and benchmarks: one member
// on free loopback ports with a temporary data dir, removed on destruction.
#include <filesystem>
#include <memory>
#include <string>

#include "services/identity/etcd/testing/child_process.h"

namespace ebpfcni::identity::testsupport {

class EtcdTestServer {
 public:
  // `name` makes the data dir test-unique (the pid is added).
  static absl::StatusOr<std::unique_ptr<EtcdTestServer>> Start(const std::string& name);
  ~EtcdTestServer();

  // "127.0.0.1:<port>", the client endpoint.
  const std::string& endpoint() const { return endpoint_; }
  const std::filesystem::path& dir() const { return dir_; }
  // kill -9, then start again on the same data dir and ports (for
  // connection-loss tests).
  void Kill() { process_.Kill(); }
  absl::Status Restart();

 private:
  EtcdTestServer() = default;
  absl::Status Launch();
  absl::Status WaitReady();

  std::filesystem::path dir_;
  std::string name_;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::string endpoint_;
  ChildProcess process_;
};

}  // namespace ebpfcni::identity::testsupport
