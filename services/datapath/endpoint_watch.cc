#include "services/datapath/endpoint_watch.h"

#include <algorithm>

#include <absl/strings/str_cat.h>

namespace ebpfcni::datapath {

absl::StatusOr<std::optional<EndpointChange>> EndpointWatch::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mutex_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return overflowed_ || !queue_.empty();
  };
  if (!mutex_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return std::nullopt;
  if (overflowed_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this watcher fell more than ", capacity_,
        " endpoint changes behind and missed some; watch again for a fresh snapshot"));
  }
  EndpointChange change = std::move(queue_.front());
  queue_.pop_front();
  return change;
}

void EndpointWatch::Push(const EndpointChange& change) {
  absl::MutexLock lock(&mutex_);
  if (overflowed_) return;
  if (queue_.size() >= capacity_) {
    // Dropping one change silently would leave the follower wrong for
    // good; dropping the whole backlog and ending the stream makes it
    // start over from a snapshot.
    overflowed_ = true;
    queue_.clear();
    return;
  }
  queue_.push_back(change);
}

bool EndpointWatch::overflowed() const {
  absl::MutexLock lock(&mutex_);
  return overflowed_;
}

std::shared_ptr<EndpointWatch> EndpointWatchers::Add(std::vector<EndpointStatus> snapshot,
                                                     size_t capacity) {
  auto watch = std::make_shared<EndpointWatch>(std::move(snapshot), std::max<size_t>(capacity, 1));
  absl::MutexLock lock(&mutex_);
  watches_.push_back(watch);
  return watch;
}

void EndpointWatchers::Remove(const std::shared_ptr<EndpointWatch>& watch) {
  absl::MutexLock lock(&mutex_);
  watches_.erase(std::remove(watches_.begin(), watches_.end(), watch), watches_.end());
}

void EndpointWatchers::Publish(const EndpointChange& change) {
  absl::MutexLock lock(&mutex_);
  for (const std::shared_ptr<EndpointWatch>& watch : watches_) watch->Push(change);
}

size_t EndpointWatchers::size() const {
  absl::MutexLock lock(&mutex_);
  return watches_.size();
}

}  // namespace ebpfcni::datapath
