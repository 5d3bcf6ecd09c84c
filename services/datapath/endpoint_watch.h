#pragma once
// Followers of the endpoint list (WatchEndpoints): each watcher gets a
// snapshot of every endpoint, then each creation, change and deletion in the
// order the endpoint manager made them.
//
// Publishing never waits for a watcher: every watcher has a bounded queue,
// and one that falls more than `capacity` changes behind is marked
// overflowed and receives nothing more. Its stream then ends with
// RESOURCE_EXHAUSTED and the client watches again, getting a fresh snapshot
// (cheaper and simpler than replaying an unbounded backlog, and the only way
// a slow client cannot hold up CNI ADDs).
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>
#include <absl/time/time.h>

#include "services/datapath/endpoint_status.h"

namespace ebpfcni::datapath {

enum class EndpointChangeType { kCreated, kUpdated, kDeleted };

struct EndpointChange {
  EndpointChangeType type = EndpointChangeType::kUpdated;
  // Without traffic or rule-hit counters (they change with every packet).
  // For kDeleted: the endpoint as it was last reported.
  EndpointStatus endpoint;
};

class EndpointWatch {
 public:
  EndpointWatch(std::vector<EndpointStatus> snapshot, size_t capacity)
      : snapshot_(std::move(snapshot)), capacity_(capacity) {}

  // Every endpoint at the moment the watch began (without counters).
  const std::vector<EndpointStatus>& snapshot() const { return snapshot_; }

  // The next change; nullopt after `timeout` without one;
  // RESOURCE_EXHAUSTED once the watcher has fallen too far behind.
  absl::StatusOr<std::optional<EndpointChange>> Next(absl::Duration timeout);

  // Queues `change`, or marks the watch overflowed when its queue is full.
  // Never blocks on the reader.
  void Push(const EndpointChange& change);

  bool overflowed() const;

 private:
  const std::vector<EndpointStatus> snapshot_;
  const size_t capacity_;
  mutable absl::Mutex mutex_;
  std::deque<EndpointChange> queue_ ABSL_GUARDED_BY(mutex_);
  bool overflowed_ ABSL_GUARDED_BY(mutex_) = false;
};

// The set of live watches. Thread-safe.
class EndpointWatchers {
 public:
  std::shared_ptr<EndpointWatch> Add(std::vector<EndpointStatus> snapshot, size_t capacity);
  void Remove(const std::shared_ptr<EndpointWatch>& watch);
  // Delivers to every watch; O(watchers), never blocks on a reader.
  void Publish(const EndpointChange& change);
  size_t size() const;

 private:
  mutable absl::Mutex mutex_;
  std::vector<std::shared_ptr<EndpointWatch>> watches_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace ebpfcni::datapath
