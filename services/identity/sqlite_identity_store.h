#pragma once
// Embedded identity store (single node, the default): one SQLite file under
// the state directory. Survives restarts and kill -9 (WAL, synchronous=FULL,
// every mutation one IMMEDIATE transaction). Not shared between processes:
// more than one replica needs the etcd store.
#include <memory>
#include <mutex>
#include <string>

#include "common/storage/sqlite_db.h"
#include "services/identity/identity_store.h"

namespace ebpfcni::identity {

class SqliteIdentityStore final : public IdentityStore {
 public:
  struct Range {
    uint32_t first;
    uint32_t last;
  };
  static absl::StatusOr<std::unique_ptr<SqliteIdentityStore>> Open(const std::string& path, Range range);

  absl::StatusOr<AllocationResult> AllocateOrGet(const std::string& labels_key, const std::string& owner) override;
  absl::StatusOr<uint32_t> Release(uint32_t id, const std::string& owner) override;
  absl::StatusOr<std::optional<StoredIdentity>> Get(uint32_t id) override;
  absl::StatusOr<std::optional<StoredIdentity>> Lookup(const std::string& labels_key) override;
  absl::StatusOr<IdentitySnapshot> List() override;
  absl::StatusOr<std::vector<IdentityChange>> ChangesSince(uint64_t revision) override;
  absl::StatusOr<std::vector<uint32_t>> CollectGarbage(absl::Duration grace) override;

 private:
  SqliteIdentityStore(std::unique_ptr<SqliteDatabase> db, Range range) : db_(std::move(db)), range_(range) {}
  absl::Status Migrate();
  absl::StatusOr<std::optional<StoredIdentity>> QueryOne(const char* sql, int64_t int_arg, const std::string* text_arg);
  absl::StatusOr<uint32_t> LowestFreeId();
  absl::Status RecordChange(ChangeKind kind, const StoredIdentity& identity);

  std::mutex mu_;
  std::unique_ptr<SqliteDatabase> db_;
  Range range_;
};

}  // namespace ebpfcni::identity
