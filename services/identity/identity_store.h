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

class IdentityStore {
 public:
  virtual ~IdentityStore() = default;

  // Returns the identity for labels_key, creating it if needed, and records
  // a reference from owner (a second call by the same owner adds nothing).
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
  virtual absl::StatusOr<std::vector<uint32_t>> CollectGarbage(absl::Duration grace) = 0;
};

}  // namespace ebpfcni::identity
