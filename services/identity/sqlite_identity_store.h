#pragma once
// Embedded identity store (single node, the default): one SQLite file under
// the state directory. Survives restarts and kill -9 (WAL, synchronous=NORMAL,
// every mutation one IMMEDIATE transaction). Not shared between processes:
// more than one replica needs the etcd store.
//
// Node liveness is a last-heartbeat timestamp per node (table nodes): a
// node silent for longer than its TTL loses its references and ipcache
// entries when the store next sweeps (on any heartbeat and on every
// garbage collection), exactly as an expired etcd lease would.
#include <memory>
#include <mutex>
#include <string>

#include "common/storage/sqlite_db.h"
#include "services/identity/change_listener.h"
#include "services/identity/identity_store.h"

namespace ebpfcni::identity {

class SqliteIdentityStore final : public IdentityStore {
 public:
  struct Range {
    uint32_t first;
    uint32_t last;
  };
  // `default_node_ttl`: the session TTL of a node first seen through an
  // allocation or a heartbeat without a TTL.
  static absl::StatusOr<std::unique_ptr<SqliteIdentityStore>> Open(const std::string& path, Range range,
                                                                   absl::Duration default_node_ttl = absl::Seconds(15));

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

 private:
  SqliteIdentityStore(std::unique_ptr<SqliteDatabase> db, Range range, absl::Duration default_node_ttl)
      : db_(std::move(db)), range_(range), default_node_ttl_(default_node_ttl) {}
  absl::Status Migrate();
  absl::StatusOr<std::optional<StoredIdentity>> QueryOne(const char* sql, int64_t int_arg, const std::string* text_arg);
  absl::StatusOr<uint32_t> LowestFreeId();
  absl::Status RecordChange(ChangeKind kind, const StoredIdentity& identity);
  absl::StatusOr<uint64_t> RecordIpCacheChange(ChangeKind kind, const IpCacheRecord& entry);
  // Makes sure `node` has a live session (refreshing it when `refresh`);
  // an expired one is swept first. Returns the session's TTL and whether
  // it is new. Inside the caller's transaction.
  absl::StatusOr<HeartbeatResult> EnsureSessionLocked(const std::string& node, absl::Duration ttl, bool refresh);
  // Drops every reference and ipcache entry of `node` (its session ended).
  absl::Status ExpireNodeLocked(const std::string& node);
  // Ends the sessions of all nodes silent for longer than their TTL.
  absl::StatusOr<bool> SweepExpiredNodesLocked();

  std::mutex mu_;
  std::unique_ptr<SqliteDatabase> db_;
  Range range_;
  absl::Duration default_node_ttl_;
  ChangeListenerSlot listener_;
};

}  // namespace ebpfcni::identity
