#pragma once
// Exponential backoff for the agent's reconnecting streams and retried
// pushes: a service that is restarting (up.sh restarts them one by one)
// must not be hammered, but a short blip must not delay policy by seconds.
#include <algorithm>
#include <chrono>

namespace ebpfcni::policy {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max) : initial_(initial), max_(max), next_(initial) {}

  // The delay to wait before the next attempt; doubles up to max.
  std::chrono::milliseconds Next() {
    auto current = next_;
    next_ = std::min(max_, next_ * 2);
    return current;
  }
  // After a success the next failure starts from the initial delay again.
  void Reset() { next_ = initial_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds next_;
};

}  // namespace ebpfcni::policy
