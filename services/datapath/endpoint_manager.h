#pragma once
// What the datapath does for endpoints, independent of gRPC: keeps the
// registry, the BPF maps and the TC filters of every endpoint consistent,
// including across restarts of the service.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <string>
#include <thread>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/synchronization/mutex.h>

#include "common/net/ip_address.h"
#include "services/datapath/bpf_objects.h"
#include "services/datapath/endpoint_policy.h"
#include "services/datapath/endpoint_registry.h"
#include "services/datapath/endpoint_status.h"
#include "services/datapath/endpoint_watch.h"
#include "services/datapath/host_address_monitor.h"
#include "services/datapath/ipcache_map.h"
#include "services/datapath/policy_map.h"
#include "services/datapath/program_runner.h"
#include "services/datapath/state_store.h"
#include "services/datapath/tc_attacher.h"

namespace ebpfcni::datapath {

struct PolicyDump {
  PolicySummary summary;
  std::vector<PolicyEntryCounters> entries;
};

// A synthetic packet for Trace().
struct TraceSpec {
  IpAddress source;
  IpAddress destination;
  uint8_t protocol = 6;
  uint16_t source_port = 0;
  // Destination port; the ICMP type for ICMP (0: echo request).
  uint16_t destination_port = 0;
  uint8_t tcp_flags = 0;  // 0: SYN
};

// One program the traced packet went through.
struct TraceHop {
  EndpointKey key;
  uint32_t endpoint_id = 0;
  bool from_pod = true;  // source endpoint's egress; false: destination's ingress
  TraceResult result;
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
  // Endpoints and policy copies live in <state_dir>/datapath/state.db.
  std::string state_dir;
  ConntrackLifetimes conntrack;
  // Slots of the per-rule-entry counters (BpfLoadOptions).
  uint32_t policy_counter_slots = EBPFCNI_POLICY_COUNTER_SLOTS_DEFAULT;
  // Map this host's own addresses to the reserved host identity (1) in the
  // ipcache, at start and whenever they change (netlink address monitor).
  bool map_host_addresses = true;
  // Identity of endpoints created without one; 0 = none (init: dropped).
  uint32_t default_identity = 0;
  // Spare policy maps a background thread puts into free id slots at start
  // (each costs an RCU grace period there, so the first pods' ADDs do not
  // pay it); 0 = none.
  int prefill_spares = 32;
  // How programs go on the host veths of endpoints that do not ask for a
  // mode (tc_attacher.h). kAuto = clsact: the cheapest to attach; TCX costs
  // an RCU grace period per hook, paid only by endpoints that need it.
  TcAttachMode tc_attach_mode = TcAttachMode::kAuto;
};

class EndpointManager {
 public:
  // Checks bpffs, loads (reusing pinned maps), opens the registry and
  // restores endpoints of an earlier run.
  static absl::StatusOr<std::unique_ptr<EndpointManager>> Start(
      const EndpointManagerOptions& options);
  ~EndpointManager();
  // Spares ready for new endpoints (tests, benchmarks).
  size_t spare_count();

  // `request.endpoint_id` is ignored; host_interface_name may be empty.
  // request.identity 0 keeps an existing endpoint's identity (a new one is
  // init: dropped). `policy` is installed before the programs are attached;
  // nullopt keeps an existing endpoint's policy (a new one has none).
  absl::StatusOr<EndpointStatus> CreateEndpoint(
      const EndpointRecord& request, const std::optional<EndpointPolicy>& policy = std::nullopt);
  // False when there was nothing to delete.
  absl::StatusOr<bool> DeleteEndpoint(const EndpointKey& key);
  absl::StatusOr<EndpointStatus> GetEndpoint(const EndpointKey& key);
  absl::StatusOr<std::vector<EndpointStatus>> ListEndpoints();
  // Deletes every endpoint not in `valid`; returns the deleted keys.
  absl::StatusOr<std::vector<EndpointKey>> GarbageCollect(const std::vector<EndpointKey>& valid);

  absl::StatusOr<EndpointStatus> SetEndpointIdentity(const EndpointKey& key, uint32_t identity);
  // nullopt removes the policy (not isolated).
  absl::StatusOr<PolicySummary> ReplaceEndpointPolicy(const EndpointKey& key,
                                                      const std::optional<EndpointPolicy>& policy);
  // Many endpoints' policies for one RCU grace period (see
  // PolicyMap::ReplaceMany): one result per item, in order. An unknown
  // endpoint is NOT_FOUND, an invalid policy or a key given twice
  // INVALID_ARGUMENT, a policy too big RESOURCE_EXHAUSTED; the other items
  // are applied all the same. The stored copies change in one commit.
  struct PolicyReplacement {
    EndpointKey key;
    std::optional<EndpointPolicy> policy;  // nullopt: remove (not isolated)
  };
  std::vector<absl::StatusOr<PolicySummary>> ReplaceEndpointPolicies(
      const std::vector<PolicyReplacement>& items);
  absl::StatusOr<PolicyDump> DumpPolicy(const EndpointKey& key);

  absl::Status UpsertPrefixIdentities(const std::vector<std::pair<IpPrefix, uint32_t>>& entries);
  // Returns how many of the prefixes existed.
  absl::StatusOr<uint32_t> DeletePrefixIdentities(const std::vector<IpPrefix>& prefixes);
  absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> ListPrefixIdentities();

  // Re-reads this network namespace's interface addresses: maps new ones to
  // the host identity, removes host entries of addresses that are gone.
  // Called by the address monitor; public for tests.
  absl::Status RefreshHostAddresses();
  // Tells watchers about endpoints whose interface is gone (link monitor).
  void RefreshInterfaceStates();

  // Node-wide counters, slots EBPFCNI_METRIC_*.
  absl::StatusOr<std::vector<PacketCount>> Metrics();

  // Runs the packet through the source endpoint's egress and/or the
  // destination endpoint's ingress program; NOT_FOUND if neither address
  // belongs to an endpoint here.
  absl::StatusOr<std::vector<TraceHop>> Trace(const TraceSpec& spec);

  // Starts following the endpoint list: the returned watch holds a snapshot
  // of every endpoint and then receives each change made after it, in
  // order; at most `capacity` changes wait for the reader (beyond that the
  // watch is overflowed, see endpoint_watch.h). Unwatch when done.
  std::shared_ptr<EndpointWatch> Watch(size_t capacity);
  void Unwatch(const std::shared_ptr<EndpointWatch>& watch);
  size_t watcher_count() const { return watchers_.size(); }

  // The key of a live endpoint id (for naming endpoints in events).
  std::optional<EndpointKey> KeyOfEndpointId(uint32_t endpoint_id);
  // Changes whenever an endpoint id is freed (and may be given to another
  // endpoint): caches of KeyOfEndpointId are stale when it changed.
  uint64_t endpoint_id_generation() const { return id_generation_.load(); }

  const RestoreSummary& restore_summary() const { return restore_summary_; }
  const BpfObjects& bpf() const { return *bpf_; }
  // kTcx or kClsact: the mode of endpoints that do not ask for one.
  TcAttachMode tc_attach_mode() const { return default_attach_mode_; }
  // Whether endpoints may ask for TCX here (kernel support, a pin dir).
  bool tcx_available() const { return tcx_ != nullptr; }

 private:
  EndpointManager(std::unique_ptr<BpfObjects> bpf, std::unique_ptr<TcAttacher> clsact,
                  std::unique_ptr<TcAttacher> tcx, TcAttachMode default_attach_mode,
                  std::unique_ptr<StateStore> store, std::unique_ptr<EndpointRegistry> registry)
      : bpf_(std::move(bpf)),
        clsact_(std::move(clsact)),
        tcx_(std::move(tcx)),
        default_attach_mode_(default_attach_mode),
        store_(std::move(store)),
        registry_(std::move(registry)),
        policy_(*bpf_),
        ipcache_(*bpf_) {}

  // Installs (or removes) the policy in the kernel and keeps the stored
  // copy in line.
  absl::Status InstallPolicy(const EndpointKey& key, uint32_t endpoint_id,
                             const std::optional<EndpointPolicy>& policy,
                             PolicyMap::Write write = PolicyMap::Write::kAtomicSwap)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // A restart whose policy pin did not survive puts stored policies back.
  absl::Status RestorePolicy(const EndpointRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  absl::Status MapHostAddresses() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Conntrack entries of the endpoint and of flows with its addresses.
  absl::Status FlushConntrack(const EndpointRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // /32 and /128 ipcache entries of the endpoint's addresses -> identity.
  absl::Status MapEndpointAddresses(const EndpointRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Removes them unless another endpoint still has the address.
  absl::Status UnmapEndpointAddresses(const EndpointRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::StatusOr<PolicySummary> SummarizePolicy(uint32_t endpoint_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  absl::Status Restore() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status RemoveOrphanMapEntries() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Map entry + both programs (TCX links or clsact filters); replaces an
  // attachment that runs other programs, never adds a second one.
  absl::Status Attach(const EndpointRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Filters (only while the ifindex still names the recorded interface),
  // map entries and the record.
  absl::Status Forget(const EndpointRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::StatusOr<EndpointStatus> StatusOf(const EndpointRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The endpoint as watchers see it: no counters, the policy summary from
  // the cache of installed policies (no map walk per change).
  EndpointStatus WatchViewOf(const EndpointRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  AttachmentState AttachmentStateOf(const EndpointRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  PolicySummary CachedPolicySummary(uint32_t endpoint_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Tells watchers about the endpoint's current state when it differs from
  // what they were last told (CREATED for an endpoint they have not seen).
  void PublishChange(const EndpointKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void PublishDeleted(const EndpointRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  absl::Mutex mutex_;
  std::unique_ptr<BpfObjects> bpf_ ABSL_GUARDED_BY(mutex_);
  // One attacher per mode; tcx_ is null where TCX is unavailable.
  const std::unique_ptr<TcAttacher> clsact_;
  const std::unique_ptr<TcAttacher> tcx_;
  const TcAttachMode default_attach_mode_;
  // The mode the record's programs are attached with (kAuto: the default).
  TcAttachMode ModeOf(const EndpointRecord& record) const {
    return record.attach_mode == TcAttachMode::kAuto ? default_attach_mode_ : record.attach_mode;
  }
  TcAttacher& AttacherFor(const EndpointRecord& record) const {
    return ModeOf(record) == TcAttachMode::kTcx ? *tcx_ : *clsact_;
  }
  // Takes our programs off the interface whichever way they are attached.
  absl::Status DetachAll(uint32_t ifindex, bool interface_is_ours);
  // The registry and the policy copies persist here; before registry_,
  // which uses it.
  std::unique_ptr<StateStore> store_ ABSL_GUARDED_BY(mutex_);
  std::unique_ptr<EndpointRegistry> registry_ ABSL_GUARDED_BY(mutex_);
  PolicyMap policy_ ABSL_GUARDED_BY(mutex_);
  IpCacheMap ipcache_ ABSL_GUARDED_BY(mutex_);
  // Policy summaries (without counters) of installed policies, by endpoint
  // id; filled from the kernel on first use after a restart.
  std::map<uint32_t, PolicySummary> policy_summaries_ ABSL_GUARDED_BY(mutex_);
  EndpointWatchers watchers_;
  // What watchers were last told about each endpoint; only kept while
  // someone watches (a new watch resets it to its snapshot).
  std::map<EndpointKey, EndpointStatus> published_ ABSL_GUARDED_BY(mutex_);
  // Ids of deleted endpoints whose policy slot keeps an empty map (a spare):
  // a new endpoint given one of them gets its policy written in place,
  // without the RCU grace period a map-in-map update costs. Most recent last.
  std::vector<uint32_t> spare_ids_ ABSL_GUARDED_BY(mutex_);
  // Ids the spare filler is working on: never handed to an endpoint.
  std::set<uint32_t> spare_reserved_ ABSL_GUARDED_BY(mutex_);
  std::atomic<bool> stopping_{false};
  std::thread spare_filler_;
  void FillSpares(int count);
  std::atomic<uint64_t> id_generation_{0};
  // Host addresses currently mapped to the host identity.
  std::set<IpAddress> host_addresses_ ABSL_GUARDED_BY(mutex_);
  RestoreSummary restore_summary_;
  uint32_t default_identity_ = 0;
  // Last member: stopped (its thread joined) before anything it calls into
  // is destroyed.
  std::unique_ptr<HostAddressMonitor> address_monitor_;
};

}  // namespace ebpfcni::datapath
