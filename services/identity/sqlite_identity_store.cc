#include "services/identity/sqlite_identity_store.h"

#include <chrono>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

namespace ebpfcni::identity {
namespace {

constexpr int64_t kSchemaVersion = 1;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteIdentityStore>> SqliteIdentityStore::Open(const std::string& path, Range range) {
  if (range.first == 0 || range.first > range.last) {
    return absl::InvalidArgumentError(absl::StrCat("identity range ", range.first, "-", range.last, " is empty"));
  }
  auto db = SqliteDatabase::Open(path);
  if (!db.ok()) return db.status();
  std::unique_ptr<SqliteIdentityStore> store(new SqliteIdentityStore(std::move(*db), range));
  if (auto status = store->Migrate(); !status.ok()) return status;
  return store;
}

absl::Status SqliteIdentityStore::Migrate() {
  auto version = db_->QueryInt64("PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*version == kSchemaVersion) return absl::OkStatus();
  if (*version != 0) {
    return absl::FailedPreconditionError(absl::StrCat(db_->path(), " has identity schema version ", *version,
                                                      "; this build understands ", kSchemaVersion));
  }
  return db_->Exec(R"sql(
    BEGIN IMMEDIATE;
    CREATE TABLE identities (
      id INTEGER PRIMARY KEY,
      labels_key TEXT NOT NULL UNIQUE,
      created_ms INTEGER NOT NULL,
      -- When the last reference went away; NULL while referenced.
      unreferenced_since_ms INTEGER
    );
    CREATE TABLE refs (
      id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
      owner TEXT NOT NULL,
      PRIMARY KEY (id, owner)
    );
    -- Change history for resumable watches.
    CREATE TABLE changes (
      revision INTEGER PRIMARY KEY AUTOINCREMENT,
      kind INTEGER NOT NULL,
      id INTEGER NOT NULL,
      labels_key TEXT NOT NULL
    );
    PRAGMA user_version = 1;
    COMMIT;
  )sql");
}

absl::StatusOr<std::optional<StoredIdentity>> SqliteIdentityStore::QueryOne(const char* sql, int64_t int_arg,
                                                                            const std::string* text_arg) {
  auto stmt = db_->Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  if (text_arg) {
    stmt->Bind(1, *text_arg);
  } else {
    stmt->Bind(1, int_arg);
  }
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  return StoredIdentity{static_cast<uint32_t>(stmt->ColumnInt64(0)), stmt->ColumnText(1)};
}

absl::StatusOr<uint32_t> SqliteIdentityStore::LowestFreeId() {
  // The first id of the range if free, else the smallest id whose successor
  // is free: one index walk, no enumeration of the range.
  auto stmt = db_->Prepare(R"sql(
    SELECT CASE
      WHEN NOT EXISTS (SELECT 1 FROM identities WHERE id = ?1) THEN ?1
      ELSE (SELECT MIN(a.id) + 1 FROM identities a
            WHERE a.id >= ?1 AND a.id < ?2
              AND NOT EXISTS (SELECT 1 FROM identities b WHERE b.id = a.id + 1))
    END)sql");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, static_cast<int64_t>(range_.first)).Bind(2, static_cast<int64_t>(range_.last));
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  int64_t id = *row ? stmt->ColumnInt64(0) : 0;
  if (id == 0 || id > range_.last) {
    spdlog::error("identity range {}-{} exhausted", range_.first, range_.last);
    return absl::ResourceExhaustedError(absl::StrCat("identity range ", range_.first, "-", range_.last,
                                                     " is exhausted; release unused identities or widen the range"));
  }
  return static_cast<uint32_t>(id);
}

absl::Status SqliteIdentityStore::RecordChange(ChangeKind kind, const StoredIdentity& identity) {
  auto stmt = db_->Prepare("INSERT INTO changes (kind, id, labels_key) VALUES (?1, ?2, ?3)");
  if (!stmt.ok()) return stmt.status();
  return stmt->Bind(1, static_cast<int64_t>(kind))
      .Bind(2, static_cast<int64_t>(identity.id))
      .Bind(3, identity.labels_key)
      .Run();
}

absl::StatusOr<AllocationResult> SqliteIdentityStore::AllocateOrGet(const std::string& labels_key,
                                                                   const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  AllocationResult result;
  auto existing = QueryOne("SELECT id, labels_key FROM identities WHERE labels_key = ?1", 0, &labels_key);
  if (!existing.ok()) return existing.status();
  if (*existing) {
    result.identity = **existing;
  } else {
    auto id = LowestFreeId();
    if (!id.ok()) return id.status();
    result.identity = StoredIdentity{*id, labels_key};
    result.newly_allocated = true;
    auto insert = db_->Prepare("INSERT INTO identities (id, labels_key, created_ms) VALUES (?1, ?2, ?3)");
    if (!insert.ok()) return insert.status();
    if (auto s = insert->Bind(1, static_cast<int64_t>(*id)).Bind(2, labels_key).Bind(3, NowMs()).Run(); !s.ok()) {
      return s;
    }
    if (auto s = RecordChange(ChangeKind::kUpsert, result.identity); !s.ok()) return s;
  }
  auto ref = db_->Prepare("INSERT OR IGNORE INTO refs (id, owner) VALUES (?1, ?2)");
  if (!ref.ok()) return ref.status();
  if (auto s = ref->Bind(1, static_cast<int64_t>(result.identity.id)).Bind(2, owner).Run(); !s.ok()) return s;
  auto referenced = db_->Prepare("UPDATE identities SET unreferenced_since_ms = NULL WHERE id = ?1");
  if (!referenced.ok()) return referenced.status();
  if (auto s = referenced->Bind(1, static_cast<int64_t>(result.identity.id)).Run(); !s.ok()) return s;
  if (auto s = (*tx)->Commit(); !s.ok()) return s;
  return result;
}

absl::StatusOr<uint32_t> SqliteIdentityStore::Release(uint32_t id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  auto existing = QueryOne("SELECT id, labels_key FROM identities WHERE id = ?1", id, nullptr);
  if (!existing.ok()) return existing.status();
  if (!*existing) return absl::NotFoundError(absl::StrCat("identity ", id, " does not exist"));
  auto del = db_->Prepare("DELETE FROM refs WHERE id = ?1 AND owner = ?2");
  if (!del.ok()) return del.status();
  if (auto s = del->Bind(1, static_cast<int64_t>(id)).Bind(2, owner).Run(); !s.ok()) return s;
  auto count = db_->Prepare("SELECT COUNT(*) FROM refs WHERE id = ?1");
  if (!count.ok()) return count.status();
  count->Bind(1, static_cast<int64_t>(id));
  auto row = count->Step();
  if (!row.ok()) return row.status();
  auto remaining = static_cast<uint32_t>(count->ColumnInt64(0));
  if (remaining == 0) {
    auto mark = db_->Prepare(
        "UPDATE identities SET unreferenced_since_ms = ?2 WHERE id = ?1 AND unreferenced_since_ms IS NULL");
    if (!mark.ok()) return mark.status();
    if (auto s = mark->Bind(1, static_cast<int64_t>(id)).Bind(2, NowMs()).Run(); !s.ok()) return s;
  }
  if (auto s = (*tx)->Commit(); !s.ok()) return s;
  return remaining;
}

absl::StatusOr<std::optional<StoredIdentity>> SqliteIdentityStore::Get(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  return QueryOne("SELECT id, labels_key FROM identities WHERE id = ?1", id, nullptr);
}

absl::StatusOr<std::optional<StoredIdentity>> SqliteIdentityStore::Lookup(const std::string& labels_key) {
  std::lock_guard<std::mutex> lock(mu_);
  return QueryOne("SELECT id, labels_key FROM identities WHERE labels_key = ?1", 0, &labels_key);
}

absl::StatusOr<IdentitySnapshot> SqliteIdentityStore::List() {
  std::lock_guard<std::mutex> lock(mu_);
  // One read transaction so the revision matches the rows.
  if (auto s = db_->Exec("BEGIN"); !s.ok()) return s;
  IdentitySnapshot snapshot;
  absl::Status status;
  {
    auto stmt = db_->Prepare("SELECT id, labels_key FROM identities ORDER BY id");
    if (!stmt.ok()) {
      status = stmt.status();
    } else {
      while (true) {
        auto row = stmt->Step();
        if (!row.ok()) {
          status = row.status();
          break;
        }
        if (!*row) break;
        snapshot.identities.push_back({static_cast<uint32_t>(stmt->ColumnInt64(0)), stmt->ColumnText(1)});
      }
    }
    if (status.ok()) {
      auto revision = db_->QueryInt64("SELECT COALESCE(MAX(revision), 0) FROM changes");
      if (revision.ok()) {
        snapshot.revision = static_cast<uint64_t>(*revision);
      } else {
        status = revision.status();
      }
    }
  }
  db_->Exec("COMMIT").IgnoreError();
  if (!status.ok()) return status;
  return snapshot;
}

absl::StatusOr<std::vector<IdentityChange>> SqliteIdentityStore::ChangesSince(uint64_t revision) {
  std::lock_guard<std::mutex> lock(mu_);
  auto oldest = db_->QueryInt64("SELECT COALESCE(MIN(revision), 0) FROM changes");
  if (!oldest.ok()) return oldest.status();
  if (*oldest > 0 && revision + 1 < static_cast<uint64_t>(*oldest)) {
    return absl::OutOfRangeError(absl::StrCat("revision ", revision, " was compacted (oldest kept: ", *oldest,
                                              "); restart the watch from a snapshot"));
  }
  auto stmt = db_->Prepare("SELECT revision, kind, id, labels_key FROM changes WHERE revision > ?1 ORDER BY revision");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, static_cast<int64_t>(revision));
  std::vector<IdentityChange> changes;
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    changes.push_back({static_cast<uint64_t>(stmt->ColumnInt64(0)), static_cast<ChangeKind>(stmt->ColumnInt64(1)),
                       {static_cast<uint32_t>(stmt->ColumnInt64(2)), stmt->ColumnText(3)}});
  }
  return changes;
}

absl::StatusOr<std::vector<uint32_t>> SqliteIdentityStore::CollectGarbage(absl::Duration grace) {
  std::lock_guard<std::mutex> lock(mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  int64_t cutoff = NowMs() - absl::ToInt64Milliseconds(grace);
  auto select = db_->Prepare(
      "SELECT id, labels_key FROM identities WHERE unreferenced_since_ms IS NOT NULL AND unreferenced_since_ms <= ?1 "
      "AND NOT EXISTS (SELECT 1 FROM refs WHERE refs.id = identities.id)");
  if (!select.ok()) return select.status();
  select->Bind(1, cutoff);
  std::vector<StoredIdentity> doomed;
  while (true) {
    auto row = select->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    doomed.push_back({static_cast<uint32_t>(select->ColumnInt64(0)), select->ColumnText(1)});
  }
  std::vector<uint32_t> deleted;
  for (const auto& identity : doomed) {
    auto del = db_->Prepare("DELETE FROM identities WHERE id = ?1");
    if (!del.ok()) return del.status();
    if (auto s = del->Bind(1, static_cast<int64_t>(identity.id)).Run(); !s.ok()) return s;
    if (auto s = RecordChange(ChangeKind::kDelete, identity); !s.ok()) return s;
    deleted.push_back(identity.id);
  }
  if (auto s = (*tx)->Commit(); !s.ok()) return s;
  for (uint32_t id : deleted) spdlog::info("garbage-collected identity {}", id);
  return deleted;
}

}  // namespace ebpfcni::identity
