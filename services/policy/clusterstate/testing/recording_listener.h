#pragma once
// A ClusterStateListener for tests: records every batch, keeps the state the
// batches add up to, and lets a test wait (bounded) for a condition on it.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "services/policy/clusterstate/cluster_state_source.h"

namespace ebpfcni::policy::testing {

class RecordingListener : public ClusterStateListener {
 public:
  using Key = std::tuple<ResourceKind, std::string, std::string>;

  void OnBatch(const std::vector<ResourceEvent>& events) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (thread_ == std::thread::id()) thread_ = std::this_thread::get_id();
    if (thread_ != std::this_thread::get_id()) calls_from_other_threads_++;
    if (events.empty()) empty_batches_++;
    batches_.push_back(events);
    for (const ResourceEvent& event : events) {
      Key key{event.kind, event.namespace_name, event.name};
      if (event.type == ResourceEvent::Type::kUpsert) {
        objects_[key] = event.object;
      } else {
        objects_.erase(key);
      }
    }
    cv_.notify_all();
  }
  void OnSynced() override {
    std::lock_guard<std::mutex> lock(mu_);
    synced_count_++;
    cv_.notify_all();
  }

  // Waits up to `timeout` for `condition` (called under the lock).
  bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, condition);
  }
  bool WaitSynced(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return WaitFor([this] { return synced_count_ > 0; }, timeout);
  }
  // Waits for an object to exist (optionally with `predicate` true on it).
  bool WaitObject(const Key& key, const std::function<bool(const nlohmann::json&)>& predicate = nullptr,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return WaitFor([&] {
      auto it = objects_.find(key);
      return it != objects_.end() && (!predicate || predicate(it->second));
    }, timeout);
  }
  bool WaitGone(const Key& key, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return WaitFor([&] { return !objects_.contains(key); }, timeout);
  }

  std::vector<std::vector<ResourceEvent>> batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  std::map<Key, nlohmann::json> objects() const {
    std::lock_guard<std::mutex> lock(mu_);
    return objects_;
  }
  size_t batch_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_.size();
  }
  int synced_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return synced_count_;
  }
  int calls_from_other_threads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_from_other_threads_;
  }
  int empty_batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return empty_batches_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::vector<ResourceEvent>> batches_;
  std::map<Key, nlohmann::json> objects_;
  int synced_count_ = 0;
  int empty_batches_ = 0;
  int calls_from_other_threads_ = 0;
  std::thread::id thread_;
};

inline RecordingListener::Key PodKey(const std::string& ns, const std::string& name) {
  return {ResourceKind::kPod, ns, name};
}
inline RecordingListener::Key NamespaceKey(const std::string& name) { return {ResourceKind::kNamespace, "", name}; }
inline RecordingListener::Key PolicyKey(const std::string& ns, const std::string& name) {
  return {ResourceKind::kNetworkPolicy, ns, name};
}

}  // namespace ebpfcni::policy::testing
