#include "services/datapath/event_stream.h"

#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

namespace ebpfcni::datapath {

std::optional<ebpfcni_event> EventStream::Subscription::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  auto has_event = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return !queue_.empty(); };
  if (!mutex_.AwaitWithTimeout(absl::Condition(&has_event), timeout)) return std::nullopt;
  ebpfcni_event event = queue_.front();
  queue_.pop_front();
  return event;
}

void EventStream::Subscription::Push(const ebpfcni_event& event,
                                     std::atomic<uint64_t>& dropped) {
  absl::MutexLock lock(&mutex_);
  if (queue_.size() >= capacity_) {
    queue_.pop_front();
    ++dropped;
  }
  queue_.push_back(event);
}

absl::StatusOr<std::unique_ptr<EventStream>> EventStream::Start(int ringbuf_fd) {
  std::unique_ptr<EventStream> stream(new EventStream());
  stream->ring_ = ring_buffer__new(ringbuf_fd, &EventStream::OnEvent, stream.get(), nullptr);
  if (stream->ring_ == nullptr) {
    return absl::InternalError(
        absl::StrCat("opening the events ring buffer: ", std::strerror(errno)));
  }
  stream->reader_ = std::thread([s = stream.get()] { s->Run(); });
  return stream;
}

EventStream::~EventStream() {
  stop_ = true;
  if (reader_.joinable()) reader_.join();
  if (ring_ != nullptr) ring_buffer__free(ring_);
}

std::shared_ptr<EventStream::Subscription> EventStream::Subscribe(size_t capacity) {
  std::shared_ptr<Subscription> subscription(new Subscription(capacity));
  absl::MutexLock lock(&mutex_);
  subscriptions_.push_back(subscription);
  return subscription;
}

void EventStream::Unsubscribe(const std::shared_ptr<Subscription>& subscription) {
  absl::MutexLock lock(&mutex_);
  subscriptions_.erase(std::remove(subscriptions_.begin(), subscriptions_.end(), subscription),
                       subscriptions_.end());
}

int EventStream::OnEvent(void* context, void* data, size_t size) {
  auto* stream = static_cast<EventStream*>(context);
  if (size < sizeof(ebpfcni_event)) return 0;  // not ours; never happens
  ebpfcni_event event;
  std::memcpy(&event, data, sizeof(event));
  absl::MutexLock lock(&stream->mutex_);
  for (const std::shared_ptr<Subscription>& subscription : stream->subscriptions_) {
    subscription->Push(event, stream->dropped_);
  }
  return 0;
}

void EventStream::Run() {
  // Events are consumed even without subscribers, so the ring never fills
  // with stale ones. The timeout bounds how long shutdown waits.
  while (!stop_.load()) {
    int n = ring_buffer__poll(ring_, /*timeout_ms=*/100);
    if (n < 0 && n != -EINTR) {
      spdlog::error("reading the events ring buffer: {}", std::strerror(-n));
      return;
    }
  }
}

}  // namespace ebpfcni::datapath
