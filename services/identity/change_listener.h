#pragma once
// Holds the one IdentityStore change listener (SetChangeListener) and calls
// it. The call happens under the slot's own mutex, so once Set(nullptr)
// returns no call is running or will start: the listener's owner may go.
#include <functional>
#include <mutex>

namespace ebpfcni::identity {

class ChangeListenerSlot {
 public:
  void Set(std::function<void()> listener) {
    std::lock_guard<std::mutex> lock(mu_);
    listener_ = std::move(listener);
  }
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    if (listener_) listener_();
  }

 private:
  std::mutex mu_;
  std::function<void()> listener_;
};

}  // namespace ebpfcni::identity
