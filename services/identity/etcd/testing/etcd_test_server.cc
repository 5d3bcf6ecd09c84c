#include "services/identity/etcd/testing/etcd_test_server.h"

#include <unistd.h>

#include <thread>

#include <absl/strings/str_cat.h>

#include "services/identity/etcd/etcd_client.h"

namespace ebpfcni::identity::testsupport {

absl::StatusOr<std::unique_ptr<EtcdTestServer>> EtcdTestServer::Start(const std::string& name) {
  std::unique_ptr<EtcdTestServer> server(new EtcdTestServer());
  server->name_ = name;
  server->dir_ = std::filesystem::temp_directory_path() / absl::StrCat("ebpfcni-etcd-", name, "-", getpid());
  std::filesystem::remove_all(server->dir_);
  std::filesystem::create_directories(server->dir_);
  auto client_port = PickFreeLoopbackPort();
  auto peer_port = PickFreeLoopbackPort();
  if (!client_port.ok()) return client_port.status();
  if (!peer_port.ok()) return peer_port.status();
  server->client_port_ = *client_port;
  server->peer_port_ = *peer_port;
  server->endpoint_ = absl::StrCat("127.0.0.1:", server->client_port_);
  if (auto status = server->Launch(); !status.ok()) return status;
  return server;
}

EtcdTestServer::~EtcdTestServer() {
  process_.Kill();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

absl::Status EtcdTestServer::Launch() {
  std::string client_url = absl::StrCat("http://127.0.0.1:", client_port_);
  std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  std::string member = absl::StrCat("ebpfcni-", name_);
  auto process = ChildProcess::Start(
      {"/usr/bin/etcd", "--name", member, "--data-dir", (dir_ / "data").string(), "--listen-client-urls", client_url,
       "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls",
       peer_url, "--initial-cluster", absl::StrCat(member, "=", peer_url), "--initial-cluster-state", "new",
       "--logger", "zap", "--log-level", "warn"},
      (dir_ / "etcd.log").string());
  if (!process.ok()) return process.status();
  process_ = std::move(*process);
  return WaitReady();
}

absl::Status EtcdTestServer::Restart() {
  process_.Kill();
  return Launch();
}

absl::Status EtcdTestServer::WaitReady() {
  etcdserverpb::RangeRequest probe;
  probe.set_key("/ebpfcni-readiness-probe");
  absl::Status last;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    // A fresh channel per try: one whose first connection caught etcd
    // before it served gRPC would back off instead of retrying at once.
    etcd::EtcdClient client({{endpoint_}, std::chrono::milliseconds(500)});
    auto range = client.Range(probe);
    if (range.ok()) return absl::OkStatus();
    last = range.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("etcd did not become ready within 20s (log: ", (dir_ / "etcd.log").string(), "): ", last.ToString()));
}

}  // namespace ebpfcni::identity::testsupport
