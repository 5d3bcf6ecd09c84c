#pragma once
// This replica's etcd lease. References this replica records are attached
// to it, so when the replica dies (no keep-alives for a TTL) etcd deletes
// them and the identities they held become garbage-collectable. A
// background thread keeps the lease alive over etcd's LeaseKeepAlive
// stream and grants a fresh one if etcd reports it gone (e.g. after a
// partition longer than the TTL).
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <absl/status/statusor.h>
#include <grpcpp/client_context.h>

#include "services/identity/etcd/etcd_client.h"

namespace ebpfcni::identity::etcd {

class EtcdLease {
 public:
  // Grants a lease with `ttl_seconds` and starts keeping it alive.
  static absl::StatusOr<std::unique_ptr<EtcdLease>> Grant(EtcdClient& client, int64_t ttl_seconds);
  // Stops the keep-alives without revoking: a restarting replica's
  // references stay for one TTL, which covers a quick restart.
  ~EtcdLease();

  // 0 while no lease is held (etcd lost it and a new one is not granted yet).
  int64_t id() const { return id_.load(); }
  int64_t ttl_seconds() const { return ttl_seconds_; }
  // Stops keeping the lease alive, as if this process had died; etcd
  // expires it after the TTL. For tests of reference expiry.
  void Abandon();

 private:
  EtcdLease(EtcdClient& client, int64_t id, int64_t ttl_seconds) : client_(client), id_(id), ttl_seconds_(ttl_seconds) {}
  void KeepAliveLoop();
  // Runs one keep-alive stream until it breaks or we stop.
  void KeepAliveStream();
  void Regrant();
  bool WaitStopping(std::chrono::milliseconds timeout);

  EtcdClient& client_;
  std::atomic<int64_t> id_;
  const int64_t ttl_seconds_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  grpc::ClientContext* stream_context_ = nullptr;
  std::thread thread_;
};

}  // namespace ebpfcni::identity::etcd
