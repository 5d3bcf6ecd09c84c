#include "services/ipam/allocation_store.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>

#include <absl/strings/str_cat.h>
#include <absl/time/clock.h>
#include <spdlog/spdlog.h>

namespace ebpfcni::ipam {
namespace {

// Version 1. Addresses are stored in their canonical text form (inet_ntop),
// so UNIQUE(pool, address) compares like with like.
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE allocations (
  container_id       TEXT    NOT NULL,
  ifname             TEXT    NOT NULL,
  pool               TEXT    NOT NULL,
  address            TEXT    NOT NULL,
  pool_prefix_length INTEGER NOT NULL,
  gateway            TEXT    NOT NULL,
  pod_namespace      TEXT    NOT NULL DEFAULT '',
  pod_name           TEXT    NOT NULL DEFAULT '',
  created_unix_ms    INTEGER NOT NULL,
  PRIMARY KEY (container_id, ifname, pool),
  UNIQUE (pool, address)
);
-- Where each pool's next-fit search resumes: the address handed out last.
CREATE TABLE pool_cursors (
  pool         TEXT PRIMARY KEY,
  last_address TEXT NOT NULL
);
PRAGMA user_version = 1;
)sql";

// Version 2: the CNI network of each allocation, so GC of one network can
// leave other networks' attachments alone. Existing rows get '' (unknown),
// which GC scoped to a network never frees.
constexpr char kMigrateV1ToV2[] = R"sql(
ALTER TABLE allocations ADD COLUMN network_name TEXT NOT NULL DEFAULT '';
PRAGMA user_version = 2;
)sql";

constexpr char kSelectColumns[] =
    "SELECT container_id, ifname, pool, address, pool_prefix_length, gateway, pod_namespace, pod_name, "
    "created_unix_ms, network_name FROM allocations";

struct Row {
  AttachmentKey attachment;
  Assignment assignment;
  std::string pod_namespace;
  std::string pod_name;
  int64_t created_unix_ms;
  std::string network_name;
};

absl::StatusOr<Row> ReadRow(const SqliteStatement& stmt) {
  Row row;
  row.attachment = {stmt.ColumnText(0), stmt.ColumnText(1)};
  row.assignment.pool = stmt.ColumnText(2);
  auto address = IpAddress::Parse(stmt.ColumnText(3));
  auto gateway = IpAddress::Parse(stmt.ColumnText(5));
  if (!address.ok() || !gateway.ok()) {
    return absl::DataLossError(absl::StrCat("IPAM database has a corrupt row for container ",
                                            row.attachment.container_id, " interface ",
                                            row.attachment.interface_name, ": address \"", stmt.ColumnText(3),
                                            "\", gateway \"", stmt.ColumnText(5), "\""));
  }
  row.assignment.address = *address;
  row.assignment.pool_prefix_length = static_cast<int>(stmt.ColumnInt64(4));
  row.assignment.gateway = *gateway;
  row.pod_namespace = stmt.ColumnText(6);
  row.pod_name = stmt.ColumnText(7);
  row.created_unix_ms = stmt.ColumnInt64(8);
  row.network_name = stmt.ColumnText(9);
  return row;
}

absl::StatusOr<std::vector<Row>> ReadRows(SqliteStatement& stmt) {
  std::vector<Row> rows;
  while (true) {
    auto has_row = stmt.Step();
    if (!has_row.ok()) return has_row.status();
    if (!*has_row) return rows;
    auto row = ReadRow(stmt);
    if (!row.ok()) return row.status();
    rows.push_back(std::move(*row));
  }
}

// Groups rows (sorted by attachment) into one record per attachment.
std::vector<AllocationRecord> GroupByAttachment(std::vector<Row> rows) {
  std::vector<AllocationRecord> records;
  for (Row& row : rows) {
    if (records.empty() || records.back().attachment != row.attachment) {
      records.push_back(
          {row.attachment, {}, row.pod_namespace, row.pod_name, row.created_unix_ms, row.network_name});
    }
    AllocationRecord& record = records.back();
    record.created_unix_ms = std::min(record.created_unix_ms, row.created_unix_ms);
    // A family added to the pools later gives an old (unnamed) attachment a
    // named row: the attachment is that network's.
    if (record.network_name.empty()) record.network_name = row.network_name;
    record.assignments.push_back(std::move(row.assignment));
  }
  return records;
}

absl::Status ValidateAttachment(const AttachmentKey& attachment) {
  if (attachment.container_id.empty()) {
    return absl::InvalidArgumentError("attachment.container_id is empty (CNI_CONTAINERID must be set)");
  }
  if (attachment.interface_name.empty()) {
    return absl::InvalidArgumentError("attachment.interface_name is empty (CNI_IFNAME must be set)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<AllocationStore>> AllocationStore::Open(const std::string& db_path,
                                                                       std::vector<Pool> pools) {
  if (pools.empty()) return absl::InvalidArgumentError("IPAM needs at least one address pool");
  std::set<std::string> names;
  for (const Pool& pool : pools) {
    if (!names.insert(pool.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat("pool name \"", pool.name(), "\" is used twice"));
    }
  }
  const std::filesystem::path parent = std::filesystem::path(db_path).parent_path();
  if (!parent.empty()) {
    std::error_code error;
    std::filesystem::create_directories(parent, error);
    if (error) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create state directory ", parent.string(), ": ", error.message()));
    }
  }
  auto db = SqliteDatabase::Open(db_path);
  if (!db.ok()) return db.status();
  std::unique_ptr<AllocationStore> store(new AllocationStore(std::move(*db), std::move(pools)));
  if (absl::Status status = store->Initialize(); !status.ok()) return status;
  return store;
}

absl::Status AllocationStore::Initialize() {
  absl::MutexLock lock(&mu_);
  // journal_mode=WAL is persistent in the file; synchronous and busy_timeout
  // are per connection. NORMAL: durable against process crashes, no fsync
  // per commit (see allocation_store.h).
  if (absl::Status s = db_->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;");
      !s.ok()) {
    return s;
  }
  {
    // Scoped: an unfinished statement would keep the COMMIT below from
    // completing.
    auto journal_mode = db_->Prepare("PRAGMA journal_mode");
    if (!journal_mode.ok()) return journal_mode.status();
    if (auto row = journal_mode->Step(); !row.ok() || !*row || journal_mode->ColumnText(0) != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat("IPAM database ", db_->path(), " cannot use the WAL journal (is the filesystem local?)"));
    }
  }
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  auto version = db_->QueryInt64("PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("IPAM database ", db_->path(), " has schema version ",
                                                      *version, ", newer than this binary understands (",
                                                      kSchemaVersion, "); refusing to touch it"));
  }
  // Every database goes through the same steps, a new one from version 0,
  // so a migrated database is exactly a new one; all in this transaction.
  if (*version == 0) {
    if (absl::Status s = db_->Exec(kSchemaV1); !s.ok()) return s;
  }
  if (*version < 2) {
    if (absl::Status s = db_->Exec(kMigrateV1ToV2); !s.ok()) return s;
  }
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  if (*version == 0) {
    spdlog::info("created IPAM database {} (schema version {})", db_->path(), kSchemaVersion);
  } else if (*version < kSchemaVersion) {
    spdlog::info("migrated IPAM database {} from schema version {} to {}; existing allocations have no network "
                 "name, so GC scoped to a network keeps them",
                 db_->path(), *version, kSchemaVersion);
  }
  return WarnAboutForeignAllocations();
}

absl::Status AllocationStore::WarnAboutForeignAllocations() {
  auto records = ListLocked(std::nullopt);
  if (!records.ok()) return records.status();
  for (const AllocationRecord& record : *records) {
    for (const Assignment& assignment : record.assignments) {
      auto pool = std::find_if(pools_.begin(), pools_.end(),
                               [&](const Pool& p) { return p.name() == assignment.pool; });
      if (pool == pools_.end()) {
        spdlog::warn("container {} interface {} holds {} from pool {}, which is no longer configured; "
                     "keeping it until released",
                     record.attachment.container_id, record.attachment.interface_name,
                     assignment.address.ToString(), assignment.pool);
      } else if (!pool->IndexOf(assignment.address).has_value()) {
        spdlog::warn("container {} interface {} holds {}, which is not a usable address of pool {} ({}) "
                     "any more; keeping it until released",
                     record.attachment.container_id, record.attachment.interface_name,
                     assignment.address.ToString(), pool->name(), pool->cidr().ToString());
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Assignment>> AllocationStore::HeldBy(const AttachmentKey& attachment) {
  auto stmt = db_->Prepare(absl::StrCat(kSelectColumns, " WHERE container_id = ?1 AND ifname = ?2 ORDER BY pool"));
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, attachment.container_id).Bind(2, attachment.interface_name);
  auto rows = ReadRows(*stmt);
  if (!rows.ok()) return rows.status();
  std::vector<Assignment> held;
  for (Row& row : *rows) held.push_back(std::move(row.assignment));
  return held;
}

absl::StatusOr<IpAddress> AllocationStore::FindFreeAddress(const Pool& pool) {
  const uint64_t capacity = pool.Capacity();

  // Resume after the address handed out last (when it is still in the pool).
  uint64_t start = 0;
  auto cursor = db_->Prepare("SELECT last_address FROM pool_cursors WHERE pool = ?1");
  if (!cursor.ok()) return cursor.status();
  cursor->Bind(1, pool.name());
  auto has_cursor = cursor->Step();
  if (!has_cursor.ok()) return has_cursor.status();
  if (*has_cursor) {
    if (auto last = IpAddress::Parse(cursor->ColumnText(0)); last.ok()) {
      if (auto index = pool.IndexOf(*last)) start = (*index + 1) % capacity;
    }
  }

  // Each held address blocks at most one candidate, so among held+1
  // distinct candidates one is free unless the pool is full. This bounds
  // the search without enumerating huge IPv6 pools.
  auto held = db_->Prepare("SELECT COUNT(*) FROM allocations WHERE pool = ?1");
  if (!held.ok()) return held.status();
  held->Bind(1, pool.name());
  if (auto row = held->Step(); !row.ok()) return row.status();
  const uint64_t held_count = static_cast<uint64_t>(held->ColumnInt64(0));
  const uint64_t probes = held_count < capacity ? held_count + 1 : capacity;

  auto taken = db_->Prepare("SELECT 1 FROM allocations WHERE pool = ?1 AND address = ?2");
  if (!taken.ok()) return taken.status();
  for (uint64_t i = 0; i < probes; ++i) {
    const IpAddress candidate = pool.AddressAt((start + i) % capacity);
    taken->Reset();
    taken->Bind(1, pool.name()).Bind(2, candidate.ToString());
    auto is_taken = taken->Step();
    if (!is_taken.ok()) return is_taken.status();
    if (!*is_taken) return candidate;
  }
  return absl::ResourceExhaustedError(absl::StrCat("pool ", pool.name(), " (", pool.cidr().ToString(),
                                                   ") has no free address: all ", capacity,
                                                   " usable addresses are allocated"));
}

absl::StatusOr<AllocateResult> AllocationStore::Allocate(const AttachmentKey& attachment,
                                                         const std::string& pod_namespace,
                                                         const std::string& pod_name,
                                                         const std::string& network_name) {
  if (absl::Status s = ValidateAttachment(attachment); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();

  auto held = HeldBy(attachment);
  if (!held.ok()) return held.status();

  AllocateResult result;
  std::vector<Assignment> unconfigured = *held;
  bool allocated_any = false;
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (const Pool& pool : pools_) {
    auto existing = std::find_if(held->begin(), held->end(), [&](const Assignment& a) { return a.pool == pool.name(); });
    if (existing != held->end()) {
      result.assignments.push_back(*existing);
      std::erase_if(unconfigured, [&](const Assignment& a) { return a.pool == pool.name(); });
      continue;
    }
    auto address = FindFreeAddress(pool);
    if (!address.ok()) return address.status();  // The transaction rolls back.
    Assignment assignment{pool.name(), *address, pool.cidr().length(), pool.gateway()};

    auto insert = db_->Prepare(
        "INSERT INTO allocations (container_id, ifname, pool, address, pool_prefix_length, gateway, "
        "pod_namespace, pod_name, created_unix_ms, network_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    if (!insert.ok()) return insert.status();
    insert->Bind(1, attachment.container_id)
        .Bind(2, attachment.interface_name)
        .Bind(3, pool.name())
        .Bind(4, assignment.address.ToString())
        .Bind(5, int64_t{assignment.pool_prefix_length})
        .Bind(6, assignment.gateway.ToString())
        .Bind(7, pod_namespace)
        .Bind(8, pod_name)
        .Bind(9, now_ms)
        .Bind(10, network_name);
    if (absl::Status s = insert->Run(); !s.ok()) return s;

    auto cursor = db_->Prepare(
        "INSERT INTO pool_cursors (pool, last_address) VALUES (?1, ?2) "
        "ON CONFLICT (pool) DO UPDATE SET last_address = excluded.last_address");
    if (!cursor.ok()) return cursor.status();
    cursor->Bind(1, pool.name()).Bind(2, assignment.address.ToString());
    if (absl::Status s = cursor->Run(); !s.ok()) return s;

    result.assignments.push_back(std::move(assignment));
    allocated_any = true;
  }
  // Addresses from pools that were configured once are still the
  // attachment's; report them too.
  result.assignments.insert(result.assignments.end(), unconfigured.begin(), unconfigured.end());
  result.already_allocated = !allocated_any;
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  return result;
}

absl::Status AllocationStore::DeleteAttachment(const AttachmentKey& attachment) {
  auto stmt = db_->Prepare("DELETE FROM allocations WHERE container_id = ?1 AND ifname = ?2");
  if (!stmt.ok()) return stmt.status();
  stmt->Bind(1, attachment.container_id).Bind(2, attachment.interface_name);
  return stmt->Run();
}

absl::StatusOr<std::vector<Assignment>> AllocationStore::Release(const AttachmentKey& attachment) {
  if (absl::Status s = ValidateAttachment(attachment); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  auto held = HeldBy(attachment);
  if (!held.ok()) return held.status();
  if (held->empty()) return held;  // Nothing to do; the transaction rolls back harmlessly.
  if (absl::Status s = DeleteAttachment(attachment); !s.ok()) return s;
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  return held;
}

absl::StatusOr<std::vector<AllocationRecord>> AllocationStore::ListLocked(
    const std::optional<std::string>& container_id) {
  auto stmt = db_->Prepare(absl::StrCat(kSelectColumns, container_id ? " WHERE container_id = ?1" : "",
                                        " ORDER BY container_id, ifname, pool"));
  if (!stmt.ok()) return stmt.status();
  if (container_id) stmt->Bind(1, *container_id);
  auto rows = ReadRows(*stmt);
  if (!rows.ok()) return rows.status();
  return GroupByAttachment(std::move(*rows));
}

absl::StatusOr<std::vector<AllocationRecord>> AllocationStore::List(const std::optional<std::string>& container_id) {
  absl::MutexLock lock(&mu_);
  return ListLocked(container_id);
}

absl::StatusOr<std::vector<AllocationRecord>> AllocationStore::GarbageCollect(
    const std::vector<AttachmentKey>& valid, const std::optional<std::string>& network_name) {
  const std::set<AttachmentKey> keep(valid.begin(), valid.end());
  absl::MutexLock lock(&mu_);
  auto tx = SqliteTransaction::Begin(*db_);
  if (!tx.ok()) return tx.status();
  auto records = ListLocked(std::nullopt);
  if (!records.ok()) return records.status();
  std::vector<AllocationRecord> freed;
  for (AllocationRecord& record : *records) {
    if (keep.contains(record.attachment)) continue;
    if (network_name && record.network_name != *network_name) continue;
    if (absl::Status s = DeleteAttachment(record.attachment); !s.ok()) return s;
    freed.push_back(std::move(record));
  }
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  return freed;
}

absl::StatusOr<std::vector<PoolUsage>> AllocationStore::Usage() {
  absl::MutexLock lock(&mu_);
  auto stmt = db_->Prepare("SELECT address FROM allocations WHERE pool = ?1");
  if (!stmt.ok()) return stmt.status();
  std::vector<PoolUsage> usage;
  for (const Pool& pool : pools_) {
    stmt->Reset();
    stmt->Bind(1, pool.name());
    uint64_t allocated = 0;
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      // Left-overs outside the (reconfigured) CIDR don't use its capacity.
      if (auto address = IpAddress::Parse(stmt->ColumnText(0)); address.ok() && pool.IndexOf(*address)) {
        ++allocated;
      }
    }
    usage.push_back({&pool, allocated});
  }
  return usage;
}

}  // namespace ebpfcni::ipam
