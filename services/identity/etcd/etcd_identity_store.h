#pragma once
// Identity store over etcd v3, for any number of stateless replicas of the
// identity service (see etcd_key_layout.h for the keys).
//
// - Writes are etcd transactions: allocation compare-and-swaps the label
//   key and the id key (create_revision == 0) and moves on to the next free
//   id on conflict, so replicas racing for the same number or label set
//   never hand out one id twice.
// - References and ipcache entries live on their *node's* lease: each node
//   has one lease (nodes/<node> holds its id, created by compare-and-swap so
//   two replicas never make two), kept alive by the node's NodeHeartbeat
//   through any replica. A dead node's references expire; a dead replica
//   changes nothing. The replica's own lease only carries its fence key.
//   Unreferenced identities get a timestamped
//   marker; CollectGarbage deletes them once the grace period has passed
//   and etcd still shows no reference (checked inside the delete's Txn).
// - One Watch stream over the prefix feeds a local cache: Get, Lookup and
//   List are answered from memory, ChangesSince from the cache's event log,
//   whose revisions are etcd revisions (the same on every replica), and
//   from etcd's history for revisions before the cache started. After a
//   broken stream the watch resumes from the last revision it applied; if
//   etcd compacted that revision away the cache reloads. Revisions etcd no
//   longer has answer OUT_OF_RANGE.
// - While the watch is down every call fails with UNAVAILABLE naming the
//   etcd endpoints; every etcd request has a deadline.
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <grpcpp/client_context.h>

#include "services/identity/etcd/etcd_client.h"
#include "services/identity/etcd/etcd_key_layout.h"
#include "services/identity/change_listener.h"
#include "services/identity/etcd/etcd_lease.h"
#include "services/identity/identity_store.h"

namespace ebpfcni::identity::etcd {

struct EtcdIdentityStoreOptions {
  EtcdClientOptions client;
  // Every key lives under this prefix; replicas sharing it share identities.
  std::string prefix = "/ebpf-cni/identities/";
  uint32_t first_id = 256;
  uint32_t last_id = 65535;
  int64_t lease_ttl_seconds = 15;
  // TTL of a node's lease when the node is first seen through an
  // allocation or a heartbeat that names no TTL.
  int64_t node_ttl_seconds = 15;
  // How long a write waits for the local cache to show it (read-your-writes).
  absl::Duration cache_wait = absl::Seconds(5);
  // Changes kept for ChangesSince; older revisions answer OUT_OF_RANGE.
  size_t change_log_limit = 100000;
};

class EtcdIdentityStore final : public IdentityStore {
 public:
  // Connects, grants the lease, loads the cache and starts the watch;
  // UNAVAILABLE when etcd cannot be reached.
  static absl::StatusOr<std::unique_ptr<EtcdIdentityStore>> Open(EtcdIdentityStoreOptions options);
  ~EtcdIdentityStore() override;

  absl::StatusOr<AllocationResult> AllocateOrGet(const std::string& labels_key, const std::string& owner) override;
  absl::StatusOr<uint32_t> Release(uint32_t id, const std::string& owner) override;
  absl::StatusOr<std::optional<StoredIdentity>> Get(uint32_t id) override;
  absl::StatusOr<std::optional<StoredIdentity>> Lookup(const std::string& labels_key) override;
  absl::StatusOr<IdentitySnapshot> List() override;
  absl::StatusOr<std::vector<IdentityChange>> ChangesSince(uint64_t revision) override;
  absl::StatusOr<std::vector<uint32_t>> CollectGarbage(absl::Duration grace) override;
  absl::StatusOr<HeartbeatResult> NodeHeartbeat(const std::string& node, absl::Duration ttl) override;
  absl::StatusOr<uint64_t> UpsertIpCacheEntry(const IpCacheRecord& entry) override;
  absl::StatusOr<bool> DeleteIpCacheEntry(const std::string& prefix, const std::string& node) override;
  absl::StatusOr<IpCacheSnapshot> ListIpCache() override;
  absl::StatusOr<std::vector<IpCacheChange>> IpCacheChangesSince(uint64_t revision) override;
  void SetChangeListener(std::function<void()> listener) override { listener_.Set(std::move(listener)); }

  // References to `id` as this replica's cache sees them.
  uint32_t CachedReferenceCount(uint32_t id);
  // The lease of `node`'s session as this replica's cache sees it (0: none).
  int64_t CachedNodeLease(const std::string& node);
  int64_t lease_id() const { return lease_->id(); }
  // Stops keeping the lease alive, as if this replica had been killed.
  void AbandonLease() { lease_->Abandon(); }

 private:
  struct CachedIdentity {
    std::string labels_key;
    int64_t create_revision = 0;
  };
  // What a labels/ key says: which id the label set has, as of which
  // creation (exists=false when the label set has no identity).
  struct LabelsEntry {
    bool exists = false;
    uint32_t id = 0;
    int64_t create_revision = 0;
  };
  struct Marker {
    int64_t since_ms = 0;
    int64_t mod_revision = 0;
  };

  explicit EtcdIdentityStore(EtcdIdentityStoreOptions options);
  absl::Status Start();

  // Cache maintenance (watch thread).
  absl::Status LoadSnapshot();
  void WatchLoop();
  void RunWatchStream();
  // A snapshot's keys count as new; a watched put of an existing key does not.
  void ApplyEventLocked(const mvccpb::Event& event, bool from_snapshot);
  void RecordChangeLocked(IdentityChange change);
  // Identity changes in (after, until] read back from etcd's own history
  // with a temporary Watch, for watchers resuming from before this
  // replica's cache started (e.g. after failing over from another
  // replica). OUT_OF_RANGE once etcd has compacted that history away.
  struct History {
    std::vector<IdentityChange> identities;
    std::vector<IpCacheChange> ipcache;
  };
  absl::StatusOr<History> HistoryFromEtcd(uint64_t after, int64_t until);
  // ChangesSince for one of the two logs (identities or ipcache).
  template <typename Change>
  absl::StatusOr<std::vector<Change>> ChangesSinceImpl(uint64_t revision, std::deque<Change> EtcdIdentityStore::*log,
                                                       std::vector<Change> EtcdIdentityStore::*older,
                                                       std::vector<Change> History::*from_history);
  void TrimLogsLocked();
  // The lease of `node`'s session, creating the session (grant + CAS on
  // nodes/<node>) if it has none. `created` says whether this call did.
  absl::StatusOr<int64_t> NodeLease(const std::string& node, int64_t ttl_seconds, bool& created);
  // Forgets a lease etcd reported gone, so the next NodeLease makes one.
  void ForgetNodeLease(const std::string& node, int64_t lease);

  // Callers' side.
  absl::Status CheckServingLocked() const;
  absl::Status CheckServing();
  // Blocks until the cache has applied `revision` (bounded by cache_wait).
  absl::Status WaitForRevision(int64_t revision);
  // The free id (neither known, in flight here, nor in `skip`) after
  // passing over `pass_over` free ones; 0 gives the lowest. Falls back to
  // the highest free id when fewer are free; nullopt when none is.
  std::optional<uint32_t> FreeIdLocked(const std::set<uint32_t>& skip, uint32_t pass_over) const;
  // Adds owner's reference to the identity `known` names. nullopt when
  // the label set changed meanwhile; `current` then says what it is now.
  absl::StatusOr<std::optional<AllocationResult>> TryReference(const std::string& labels_key, LabelsEntry known,
                                                               const std::string& owner, LabelsEntry& current);
  absl::Status ExhaustedError() const;
  static LabelsEntry ParseLabelsEntry(const etcdserverpb::RangeResponse& range);

  const EtcdIdentityStoreOptions options_;
  const KeyLayout keys_;
  std::unique_ptr<EtcdClient> client_;
  std::unique_ptr<EtcdLease> lease_;

  std::mutex mu_;
  std::condition_variable applied_cv_;
  // Cache, guarded by mu_.
  std::map<uint32_t, CachedIdentity> by_id_;
  std::unordered_map<std::string, uint32_t> by_labels_;
  std::unordered_map<uint32_t, uint32_t> ref_counts_;
  std::unordered_map<uint32_t, Marker> markers_;
  std::deque<IdentityChange> change_log_;
  std::map<std::string, int64_t> node_leases_;
  struct CachedIpCacheEntry {
    IpCacheRecord record;
    int64_t lease = 0;
  };
  std::map<std::string, CachedIpCacheEntry> ipcache_;
  std::deque<IpCacheChange> ipcache_log_;
  std::vector<IpCacheChange> older_ipcache_changes_;
  int64_t applied_revision_ = 0;
  // ChangesSince(r) is complete for r >= history_start_.
  int64_t history_start_ = 0;
  // Changes in (older_from_, history_start_] read back from etcd, kept so a
  // watcher that resumed from before this cache does not make every later
  // poll read etcd's history again.
  int64_t older_from_ = 0;
  std::vector<IdentityChange> older_changes_;
  bool watch_live_ = false;
  std::string watch_error_ = "watch not started";
  // Ids this replica is trying to allocate right now, so its own
  // concurrent allocations do not all race for the same number.
  std::set<uint32_t> in_flight_;

  bool stopping_ = false;
  bool needs_reload_ = false;
  grpc::ClientContext* watch_context_ = nullptr;
  std::thread watch_thread_;
  ChangeListenerSlot listener_;
};

}  // namespace ebpfcni::identity::etcd
