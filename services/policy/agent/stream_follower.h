#pragma once
// A server stream the agent follows for its whole life (identity and
// endpoint watches): run in a thread, reconnect with backoff whenever it
// ends (service restarting, connection lost), stop promptly by cancelling
// the call in flight.
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

namespace ebpfcni::policy {

class StreamFollower {
 public:
  StreamFollower(const StreamFollower&) = delete;
  StreamFollower& operator=(const StreamFollower&) = delete;
  virtual ~StreamFollower();

  void Start();
  // Cancels the stream in flight and joins; idempotent. A subclass calls it
  // from its own destructor, before its members go away.
  void Stop();

 protected:
  // `what` names the stream in log lines ("identity watch").
  explicit StreamFollower(std::string what) : what_(std::move(what)) {}

  // Opens the stream on `context` and reads it until it ends. Sets
  // *progressed once the stream delivered something useful (the next
  // failure then retries quickly again).
  virtual grpc::Status FollowOnce(grpc::ClientContext& context, bool* progressed) = 0;
  // After a stream ended, unless stopping (e.g. to decide where to resume).
  virtual void OnStreamEnded(const grpc::Status&) {}

 private:
  void Run();

  const std::string what_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  grpc::ClientContext* active_ = nullptr;
  std::thread thread_;
};

}  // namespace ebpfcni::policy
