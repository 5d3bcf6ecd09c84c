#pragma once
// The contract every identity store backend keeps (embedded SQLite for a
// single node, etcd for replicas and clusters). The same contract test suite
// runs against each backend.
//
// Identities are keyed by their canonical label key (LabelSet::Key()). A
// store hands out the lowest free number in [first, last] of its range;
// allocation is race-free (one label key never gets two ids, one id never
// two label keys) and idempotent per (identity, owner) reference. Every
// create/delete bumps a revision and is recorded so watchers can resume.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <absl/time/time.h>

namespace ebpfcni::identity {

struct StoredIdentity {
  uint32_t id = 0;
  std::string labels_key;
  bool operator==(const StoredIdentity&) const = default;
};

struct AllocationResult {
  StoredIdentity identity;
  bool newly_allocated = false;
};

struct IdentitySnapshot {
  std::vector<StoredIdentity> identities;
  // Revision the snapshot reflects; ChangesSince(revision) continues it.
  uint64_t revision = 0;
};

enum class ChangeKind { kUpsert, kDelete };

struct IdentityChange {
  uint64_t revision = 0;
  ChangeKind kind = ChangeKind::kUpsert;
  StoredIdentity identity;
};

// One IP prefix -> identity mapping ("ipcache"), owned by a node.
struct IpCacheRecord {
  std::string prefix;  // canonical, e.g. "10.244.0.5/32"
  uint32_t identity = 0;
  std::string node;
  bool operator==(const IpCacheRecord&) const = default;
};

struct IpCacheSnapshot {
  std::vector<IpCacheRecord> entries;
  // Revision the snapshot reflects; IpCacheChangesSince(revision) continues it.
  uint64_t revision = 0;
};

struct IpCacheChange {
  uint64_t revision = 0;
  ChangeKind kind = ChangeKind::kUpsert;
  IpCacheRecord entry;  // for a deletion: the entry as it was
};

struct HeartbeatResult {
  // A new liveness session began: what the node recorded before is gone.
  bool new_session = false;
  absl::Duration ttl;
};

// The node part of an owner key "<node>/<endpoint>" (all of it without '/').
inline std::string NodeOfOwner(const std::string& owner) { return owner.substr(0, owner.find('/')); }

class IdentityStore {
 public:
  virtual ~IdentityStore() = default;

  // Returns the identity for labels_key, creating it if needed, and records
  // a reference from owner ("<node>/<endpoint>"; a second call by the same
  // owner adds nothing). The reference lives as long as the owner's node
  // (NodeHeartbeat); a node never seen before starts a session with the
  // store's default TTL.
  // RESOURCE_EXHAUSTED when the range has no free number.
  virtual absl::StatusOr<AllocationResult> AllocateOrGet(const std::string& labels_key, const std::string& owner) = 0;
  // Drops owner's reference; returns the references left. NOT_FOUND for an
  // unknown id. An identity left without references is deleted by
  // CollectGarbage once the grace period has passed.
  virtual absl::StatusOr<uint32_t> Release(uint32_t id, const std::string& owner) = 0;
  virtual absl::StatusOr<std::optional<StoredIdentity>> Get(uint32_t id) = 0;
  virtual absl::StatusOr<std::optional<StoredIdentity>> Lookup(const std::string& labels_key) = 0;
  virtual absl::StatusOr<IdentitySnapshot> List() = 0;
  // Changes with a revision greater than `revision`, oldest first.
  // OUT_OF_RANGE when the history no longer reaches back that far.
  virtual absl::StatusOr<std::vector<IdentityChange>> ChangesSince(uint64_t revision) = 0;
  // Deletes identities that have had no reference for at least `grace`;
  // returns their ids.
  // Ignores references of dead nodes (silent for longer than their TTL).
  virtual absl::StatusOr<std::vector<uint32_t>> CollectGarbage(absl::Duration grace) = 0;

  // Node liveness: keeps `node`'s session alive for `ttl` more (a zero ttl
  // takes the store's default); starts a new session if it has none or it
  // expired. References and ipcache entries hang on the node's session.
  virtual absl::StatusOr<HeartbeatResult> NodeHeartbeat(const std::string& node, absl::Duration ttl) = 0;

  // ipcache: prefix -> identity, owned by a node (same liveness as its
  // references). Upsert returns the change's revision; Delete removes the
  // entry only if `node` owns it and says whether it did.
  virtual absl::StatusOr<uint64_t> UpsertIpCacheEntry(const IpCacheRecord& entry) = 0;
  virtual absl::StatusOr<bool> DeleteIpCacheEntry(const std::string& prefix, const std::string& node) = 0;
  virtual absl::StatusOr<IpCacheSnapshot> ListIpCache() = 0;
  // Like ChangesSince, for the ipcache.
  virtual absl::StatusOr<std::vector<IpCacheChange>> IpCacheChangesSince(uint64_t revision) = 0;

  // Called (from any thread, without store locks held) whenever the store
  // may have new changes, including ones written by other replicas or
  // expired nodes, so watchers wake at once instead of polling. nullptr
  // unsets it; the store must not call it after that returns.
  virtual void SetChangeListener(std::function<void()> listener) = 0;
};

}  // namespace ebpfcni::identity
