#pragma once
// Reads drop and policy-verdict events from the programs' ring buffer on a
// background thread and fans them out to subscribers (StreamEvents calls).
// A subscriber that falls behind loses its oldest events, counted in
// dropped(), instead of slowing the reader or the other subscribers.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/time.h>

#include "ebpfcni/datapath_abi.h"

struct ring_buffer;

namespace ebpfcni::datapath {

class EventStream {
 public:
  class Subscription {
   public:
    // The next event, or nullopt after `timeout` without one.
    std::optional<ebpfcni_event> Next(absl::Duration timeout);

   private:
    friend class EventStream;
    explicit Subscription(size_t capacity) : capacity_(capacity) {}
    void Push(const ebpfcni_event& event, std::atomic<uint64_t>& dropped);

    const size_t capacity_;
    absl::Mutex mutex_;
    std::deque<ebpfcni_event> queue_ ABSL_GUARDED_BY(mutex_);
  };

  // Starts reading the ring buffer map `ringbuf_fd` (not owned).
  static absl::StatusOr<std::unique_ptr<EventStream>> Start(int ringbuf_fd);
  ~EventStream();
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  std::shared_ptr<Subscription> Subscribe(size_t capacity = 8192);
  void Unsubscribe(const std::shared_ptr<Subscription>& subscription);

  // Events lost to slow subscribers.
  uint64_t dropped() const { return dropped_.load(); }

 private:
  EventStream() = default;
  static int OnEvent(void* context, void* data, size_t size);
  void Run();

  ring_buffer* ring_ = nullptr;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> dropped_{0};
  absl::Mutex mutex_;
  std::vector<std::shared_ptr<Subscription>> subscriptions_ ABSL_GUARDED_BY(mutex_);
  std::thread reader_;
};

}  // namespace ebpfcni::datapath
