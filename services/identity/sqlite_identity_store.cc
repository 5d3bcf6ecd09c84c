#include "services/identity/sqlite_identity_store.h"

#include <chrono>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

namespace ebpfcni::identity {
namespace {

constexpr int64_t kSchemaVersion = 2;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteIdentityStore>> SqliteIdentityStore::Open(const std::string& path, Range range,
                                                                             absl::Duration default_node_ttl) {
  if (range.first == 0 || range.first > range.last) {
    return absl::InvalidArgumentError(absl::StrCat("identity range ", range.first, "-", range.last, " is empty"));
  }
  auto db = SqliteDatabase::Open(path);
  if (!db.ok()) return db.status();
  // WAL with synchronous=NORMAL, as IPAM: a commit that returned survives
  // kill -9 (it is in the WAL file), and no commit waits for an fsync (FULL
  // cost ~4 ms p50 / 12 ms p99 per commit here, on every CNI ADD's
  // ResolvePod, serialised under the store's lock). A power loss may lose
  // the last commits; it also ends every pod and datapath map of this
  // single node, so no holder of a lost reference or id survives it.
  if (auto s = (*db)->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;"); !s.ok()) {
    return s;
  }
  if (default_node_ttl < absl::Seconds(1)) return absl::InvalidArgumentError("the default node TTL must be >= 1s");
  std::unique_ptr<SqliteIdentityStore> store(new SqliteIdentityStore(std::move(*db), range, default_node_ttl));
  if (auto status = store->Migrate(); !status.ok()) return status;
  return store;
}

absl::Status SqliteIdentityStore::Migrate() {
  auto version = db_->QueryInt64("PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*version == kSchemaVersion) return absl::OkStatus();
  if (*version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(db_->path(), " has identity schema version ", *version,
                                                      "; this build understands ", kSchemaVersion));
  }
  if (*version == 0) {
    auto status = db_->Exec(R"sql(
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
    if (!status.ok()) return status;
  }
  // Version 2: node liveness (references hang on their node's session) and
  // the ipcache. References already there get a fresh session.
  return db_->Exec(absl::StrCat(R"sql(
    BEGIN IMMEDIATE;
    ALTER TABLE refs ADD COLUMN node TEXT NOT NULL DEFAULT '';
    UPDATE refs SET node = substr(owner, 1, instr(owner || '/', '/') - 1);
    CREATE INDEX refs_by_node ON refs(node);
    CREATE TABLE nodes (
      node TEXT PRIMARY KEY,
      last_heartbeat_ms INTEGER NOT NULL,
      ttl_ms INTEGER NOT NULL
    );
    INSERT INTO nodes SELECT DISTINCT node, )sql",
                                NowMs(), ", ", absl::ToInt64Milliseconds(default_node_ttl_), R"sql( FROM refs;
    CREATE TABLE ipcache (
      prefix TEXT PRIMARY KEY,
      identity INTEGER NOT NULL,
      node TEXT NOT NULL
    );
    CREATE INDEX ipcache_by_node ON ipcache(node);
    CREATE TABLE ipcache_changes (
      revision INTEGER PRIMARY KEY AUTOINCREMENT,
      kind INTEGER NOT NULL,
      prefix TEXT NOT NULL,
      identity INTEGER NOT NULL,
      node TEXT NOT NULL
    );
    PRAGMA user_version = 2;
    COMMIT;
  )sql"));
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
  std::unique_lock<std::mutex> lock(mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  const std::string node = NodeOfOwner(owner);
  auto session = EnsureSessionLocked(node, absl::ZeroDuration(), /*refresh=*/false);
  if (!session.ok()) return session.status();
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
  auto ref = db_->Prepare("INSERT OR IGNORE INTO refs (id, owner, node) VALUES (?1, ?2, ?3)");
  if (!ref.ok()) return ref.status();
  if (auto s = ref->Bind(1, static_cast<int64_t>(result.identity.id)).Bind(2, owner).Bind(3, node).Run(); !s.ok()) {
    return s;
  }
  auto referenced = db_->Prepare("UPDATE identities SET unreferenced_since_ms = NULL WHERE id = ?1");
  if (!referenced.ok()) return referenced.status();
  if (auto s = referenced->Bind(1, static_cast<int64_t>(result.identity.id)).Run(); !s.ok()) return s;
  if (auto s = (*tx)->Commit(); !s.ok()) return s;
  lock.unlock();
  if (result.newly_allocated || session->new_session) listener_.Notify();
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
  std::unique_lock<std::mutex> lock(mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  // References of dead nodes are gone before anything is judged unreferenced.
  auto swept = SweepExpiredNodesLocked();
  if (!swept.ok()) return swept.status();
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
  lock.unlock();
  for (uint32_t id : deleted) spdlog::info("garbage-collected identity {}", id);
  if (*swept || !deleted.empty()) listener_.Notify();
  return deleted;
}

absl::StatusOr<uint64_t> SqliteIdentityStore::RecordIpCacheChange(ChangeKind kind, const IpCacheRecord& entry) {
  auto stmt = db_->Prepare("INSERT INTO ipcache_changes (kind, prefix, identity, node) VALUES (?1, ?2, ?3, ?4)");
  if (!stmt.ok()) return stmt.status();
  auto status = stmt->Bind(1, static_cast<int64_t>(kind))
                    .Bind(2, entry.prefix)
                    .Bind(3, static_cast<int64_t>(entry.identity))
                    .Bind(4, entry.node)
                    .Run();
  if (!status.ok()) return status;
  auto revision = db_->QueryInt64("SELECT last_insert_rowid()");
  if (!revision.ok()) return revision.status();
  return static_cast<uint64_t>(*revision);
}

absl::Status SqliteIdentityStore::ExpireNodeLocked(const std::string& node) {
  const int64_t now = NowMs();
  auto refs = db_->Prepare("DELETE FROM refs WHERE node = ?1");
  if (!refs.ok()) return refs.status();
  if (auto s = refs->Bind(1, node).Run(); !s.ok()) return s;
  // Identities left without any reference start their grace period now.
  auto mark = db_->Prepare(
      "UPDATE identities SET unreferenced_since_ms = ?1 WHERE unreferenced_since_ms IS NULL "
      "AND NOT EXISTS (SELECT 1 FROM refs WHERE refs.id = identities.id)");
  if (!mark.ok()) return mark.status();
  if (auto s = mark->Bind(1, now).Run(); !s.ok()) return s;
  auto entries = db_->Prepare("SELECT prefix, identity FROM ipcache WHERE node = ?1 ORDER BY prefix");
  if (!entries.ok()) return entries.status();
  entries->Bind(1, node);
  std::vector<IpCacheRecord> gone;
  while (true) {
    auto row = entries->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    gone.push_back({entries->ColumnText(0), static_cast<uint32_t>(entries->ColumnInt64(1)), node});
  }
  for (const auto& entry : gone) {
    if (auto r = RecordIpCacheChange(ChangeKind::kDelete, entry); !r.ok()) return r.status();
  }
  auto del = db_->Prepare("DELETE FROM ipcache WHERE node = ?1");
  if (!del.ok()) return del.status();
  if (auto s = del->Bind(1, node).Run(); !s.ok()) return s;
  spdlog::warn("node {} stopped heartbeating: its references and {} ipcache entries expired", node, gone.size());
  return absl::OkStatus();
}

absl::StatusOr<bool> SqliteIdentityStore::SweepExpiredNodesLocked() {
  auto stmt = db_->Prepare("SELECT node FROM nodes WHERE last_heartbeat_ms + ttl_ms < ?1");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, NowMs());
  std::vector<std::string> dead;
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    dead.push_back(stmt->ColumnText(0));
  }
  for (const auto& node : dead) {
    if (auto s = ExpireNodeLocked(node); !s.ok()) return s;
    auto del = db_->Prepare("DELETE FROM nodes WHERE node = ?1");
    if (!del.ok()) return del.status();
    if (auto s = del->Bind(1, node).Run(); !s.ok()) return s;
  }
  return !dead.empty();
}

absl::StatusOr<HeartbeatResult> SqliteIdentityStore::EnsureSessionLocked(const std::string& node, absl::Duration ttl,
                                                                         bool refresh) {
  if (node.empty()) return absl::InvalidArgumentError("a node name is required");
  if (ttl <= absl::ZeroDuration()) ttl = default_node_ttl_;
  const int64_t now = NowMs();
  auto stmt = db_->Prepare("SELECT last_heartbeat_ms, ttl_ms FROM nodes WHERE node = ?1");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, node);
  auto row = stmt->Step();
  if (!row.ok()) return row.status();
  if (*row && stmt->ColumnInt64(0) + stmt->ColumnInt64(1) >= now) {
    HeartbeatResult live{false, absl::Milliseconds(stmt->ColumnInt64(1))};
    if (refresh) {
      auto update = db_->Prepare("UPDATE nodes SET last_heartbeat_ms = ?2 WHERE node = ?1");
      if (!update.ok()) return update.status();
      if (auto s = update->Bind(1, node).Bind(2, now).Run(); !s.ok()) return s;
    }
    return live;
  }
  if (*row) {
    if (auto s = ExpireNodeLocked(node); !s.ok()) return s;
  }
  auto upsert = db_->Prepare("INSERT OR REPLACE INTO nodes (node, last_heartbeat_ms, ttl_ms) VALUES (?1, ?2, ?3)");
  if (!upsert.ok()) return upsert.status();
  if (auto s = upsert->Bind(1, node).Bind(2, now).Bind(3, absl::ToInt64Milliseconds(ttl)).Run(); !s.ok()) return s;
  return HeartbeatResult{true, ttl};
}

absl::StatusOr<HeartbeatResult> SqliteIdentityStore::NodeHeartbeat(const std::string& node, absl::Duration ttl) {
  std::unique_lock<std::mutex> lock(mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  auto swept = SweepExpiredNodesLocked();
  if (!swept.ok()) return swept.status();
  auto result = EnsureSessionLocked(node, ttl, /*refresh=*/true);
  if (!result.ok()) return result.status();
  if (auto s = (*tx)->Commit(); !s.ok()) return s;
  lock.unlock();
  if (*swept) listener_.Notify();
  return result;
}

absl::StatusOr<uint64_t> SqliteIdentityStore::UpsertIpCacheEntry(const IpCacheRecord& entry) {
  std::unique_lock<std::mutex> lock(mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  auto session = EnsureSessionLocked(entry.node, absl::ZeroDuration(), /*refresh=*/false);
  if (!session.ok()) return session.status();
  auto existing = db_->Prepare("SELECT identity, node FROM ipcache WHERE prefix = ?1");
  if (!existing.ok()) return existing.status();
  existing->Bind(1, entry.prefix);
  auto row = existing->Step();
  if (!row.ok()) return row.status();
  if (*row && static_cast<uint32_t>(existing->ColumnInt64(0)) == entry.identity && existing->ColumnText(1) == entry.node) {
    // Unchanged: no new revision, watchers see nothing.
    auto revision = db_->QueryInt64("SELECT COALESCE(MAX(revision), 0) FROM ipcache_changes");
    if (!revision.ok()) return revision.status();
    if (auto s = (*tx)->Commit(); !s.ok()) return s;
    return static_cast<uint64_t>(*revision);
  }
  auto put = db_->Prepare("INSERT OR REPLACE INTO ipcache (prefix, identity, node) VALUES (?1, ?2, ?3)");
  if (!put.ok()) return put.status();
  if (auto s = put->Bind(1, entry.prefix).Bind(2, static_cast<int64_t>(entry.identity)).Bind(3, entry.node).Run();
      !s.ok()) {
    return s;
  }
  auto revision = RecordIpCacheChange(ChangeKind::kUpsert, entry);
  if (!revision.ok()) return revision.status();
  if (auto s = (*tx)->Commit(); !s.ok()) return s;
  lock.unlock();
  listener_.Notify();
  return *revision;
}

absl::StatusOr<bool> SqliteIdentityStore::DeleteIpCacheEntry(const std::string& prefix, const std::string& node) {
  std::unique_lock<std::mutex> lock(mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  auto existing = db_->Prepare("SELECT identity FROM ipcache WHERE prefix = ?1 AND node = ?2");
  if (!existing.ok()) return existing.status();
  existing->Bind(1, prefix).Bind(2, node);
  auto row = existing->Step();
  if (!row.ok()) return row.status();
  if (!*row) return false;
  IpCacheRecord gone{prefix, static_cast<uint32_t>(existing->ColumnInt64(0)), node};
  auto del = db_->Prepare("DELETE FROM ipcache WHERE prefix = ?1");
  if (!del.ok()) return del.status();
  if (auto s = del->Bind(1, prefix).Run(); !s.ok()) return s;
  if (auto r = RecordIpCacheChange(ChangeKind::kDelete, gone); !r.ok()) return r.status();
  if (auto s = (*tx)->Commit(); !s.ok()) return s;
  lock.unlock();
  listener_.Notify();
  return true;
}

absl::StatusOr<IpCacheSnapshot> SqliteIdentityStore::ListIpCache() {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto s = db_->Exec("BEGIN"); !s.ok()) return s;
  IpCacheSnapshot snapshot;
  auto read = [&]() -> absl::Status {
    auto stmt = db_->Prepare("SELECT prefix, identity, node FROM ipcache ORDER BY prefix");
    if (!stmt.ok()) return stmt.status();
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      snapshot.entries.push_back(
          {stmt->ColumnText(0), static_cast<uint32_t>(stmt->ColumnInt64(1)), stmt->ColumnText(2)});
    }
    auto revision = db_->QueryInt64("SELECT COALESCE(MAX(revision), 0) FROM ipcache_changes");
    if (!revision.ok()) return revision.status();
    snapshot.revision = static_cast<uint64_t>(*revision);
    return absl::OkStatus();
  };
  absl::Status status = read();
  db_->Exec("COMMIT").IgnoreError();
  if (!status.ok()) return status;
  return snapshot;
}

absl::StatusOr<std::vector<IpCacheChange>> SqliteIdentityStore::IpCacheChangesSince(uint64_t revision) {
  std::lock_guard<std::mutex> lock(mu_);
  auto stmt = db_->Prepare(
      "SELECT revision, kind, prefix, identity, node FROM ipcache_changes WHERE revision > ?1 ORDER BY revision");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, static_cast<int64_t>(revision));
  std::vector<IpCacheChange> changes;
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    changes.push_back({static_cast<uint64_t>(stmt->ColumnInt64(0)), static_cast<ChangeKind>(stmt->ColumnInt64(1)),
                       {stmt->ColumnText(2), static_cast<uint32_t>(stmt->ColumnInt64(3)), stmt->ColumnText(4)}});
  }
  return changes;
}

}  // namespace ebpfcni::identity
