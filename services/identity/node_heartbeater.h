#pragma once
// Client side of node liveness, for the node's datapath service: keeps the
// node's session with the identity service alive by calling NodeHeartbeat
// every ttl/3 from a background thread (through any replica: pass a
// MakeBalancedChannel channel), so the node's references and ipcache
// entries live exactly as long as the node does.
//
// When a heartbeat starts a new session (the first one, or after the node
// was silent for longer than its TTL, e.g. a long partition) whatever the
// node recorded before is gone: `on_new_session` runs (on the heartbeat
// thread) and must re-assert it (AllocateIdentity / UpsertIpCacheEntry for
// every local endpoint; both are idempotent).
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <absl/status/status.h>
#include <absl/time/time.h>
#include <grpcpp/channel.h>

#include "ebpfcni/identity/v1/identity.grpc.pb.h"

namespace ebpfcni::identity {

class NodeHeartbeater {
 public:
  struct Options {
    std::string node;
    absl::Duration ttl = absl::Seconds(15);
    // Deadline of each call; a failed heartbeat is retried after 1 s.
    absl::Duration call_timeout = absl::Seconds(2);
  };

  NodeHeartbeater(std::shared_ptr<grpc::Channel> channel, Options options, std::function<void()> on_new_session);
  // Stops heartbeating (the session then expires after its TTL).
  ~NodeHeartbeater();

  // Outcome of the latest heartbeat (UNAVAILABLE before the first).
  absl::Status last_status();

 private:
  void Loop();
  // One heartbeat; true when it reached the service.
  bool Beat();

  std::unique_ptr<v1::IdentityService::Stub> stub_;
  const Options options_;
  const std::function<void()> on_new_session_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  absl::Status last_status_ = absl::UnavailableError("no heartbeat sent yet");
  std::thread thread_;
};

}  // namespace ebpfcni::identity
