#pragma once
// What the datapath does for endpoints, independent of gRPC: keeps the
// registry, the BPF maps and the TC filters of every endpoint consistent,
// including across restarts of the service.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>

#include "services/datapath/bpf_objects.h"
#include "services/datapath/endpoint_registry.h"

namespace ebpfcni::datapath {

enum class AttachmentState {
  // The interface exists but our filters are not (both) attached: someone
  // removed them; the next CreateEndpoint or restart re-attaches.
  kDetached,
  kAttached,
  kInterfaceGone,
};

struct EndpointStatus {
  EndpointRecord record;
  EndpointCounters counters;
  AttachmentState state = AttachmentState::kDetached;
};

// What Start() found and did about endpoints of an earlier run.
struct RestoreSummary {
  std::vector<EndpointKey> readopted;
  std::vector<EndpointKey> removed_stale;
  // Interface present but attaching failed; kept, reported as detached.
  std::vector<EndpointKey> failed;
};

struct EndpointManagerOptions {
  // Where maps and programs are pinned; must be on bpffs.
  std::string bpf_dir;
  // The registry lives at <state_dir>/datapath/endpoints.json.
  std::string state_dir;
};

class EndpointManager {
 public:
  // Checks bpffs, loads (reusing pinned maps), opens the registry and
  // restores endpoints of an earlier run.
  static absl::StatusOr<std::unique_ptr<EndpointManager>> Start(
      const EndpointManagerOptions& options);

  // `request.endpoint_id` is ignored; host_interface_name may be empty.
  absl::StatusOr<EndpointStatus> CreateEndpoint(const EndpointRecord& request);
  // False when there was nothing to delete.
  absl::StatusOr<bool> DeleteEndpoint(const EndpointKey& key);
  absl::StatusOr<EndpointStatus> GetEndpoint(const EndpointKey& key);
  absl::StatusOr<std::vector<EndpointStatus>> ListEndpoints();
  // Deletes every endpoint not in `valid`; returns the deleted keys.
  absl::StatusOr<std::vector<EndpointKey>> GarbageCollect(const std::vector<EndpointKey>& valid);

  const RestoreSummary& restore_summary() const { return restore_summary_; }
  const BpfObjects& bpf() const { return *bpf_; }

 private:
  EndpointManager(std::unique_ptr<BpfObjects> bpf, std::unique_ptr<EndpointRegistry> registry)
      : bpf_(std::move(bpf)), registry_(std::move(registry)) {}

  absl::Status Restore() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status RemoveOrphanMapEntries() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Map entry + clsact + both filters; replaces filters that run other
  // programs, never adds a second one.
  absl::Status Attach(const EndpointRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Filters (only while the ifindex still names the recorded interface),
  // map entries and the record.
  absl::Status Forget(const EndpointRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::StatusOr<EndpointStatus> StatusOf(const EndpointRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  absl::Mutex mutex_;
  std::unique_ptr<BpfObjects> bpf_ ABSL_GUARDED_BY(mutex_);
  std::unique_ptr<EndpointRegistry> registry_ ABSL_GUARDED_BY(mutex_);
  RestoreSummary restore_summary_;
};

}  // namespace ebpfcni::datapath
