#pragma once
// A thin RAII layer over libsqlite3: a connection, prepared statements and
// an IMMEDIATE transaction guard, with every failure turned into an
// absl::Status that carries SQLite's own message.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

struct sqlite3;
struct sqlite3_stmt;

namespace ebpfcni {

class SqliteStatement {
 public:
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  ~SqliteStatement();

  // Parameters are numbered from 1, as in SQL ("?1").
  SqliteStatement& Bind(int index, std::string_view text);
  SqliteStatement& Bind(int index, int64_t value);

  // True when a row is available, false when the statement is done.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows.
  absl::Status Run();

  // Columns are numbered from 0.
  std::string ColumnText(int column) const;
  int64_t ColumnInt64(int column) const;

  // Makes the statement runnable again with fresh bindings.
  void Reset();

 private:
  friend class SqliteDatabase;
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  // A failed bind is reported by the next Step so call sites stay chainable.
  absl::Status bind_status_;
};

class SqliteDatabase {
 public:
  // Opens (creating if needed) the database file.
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(const std::string& path);
  ~SqliteDatabase();
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;

  // Runs one or more statements that return no rows.
  absl::Status Exec(const std::string& sql);
  absl::StatusOr<SqliteStatement> Prepare(std::string_view sql);
  // Reads a single integer (e.g. "PRAGMA user_version").
  absl::StatusOr<int64_t> QueryInt64(std::string_view sql);

  const std::string& path() const { return path_; }

 private:
  SqliteDatabase(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

  sqlite3* db_;
  std::string path_;
};

// Status for the current error of a connection, e.g. "INSERT ...: UNIQUE
// constraint failed: allocations.pool, allocations.address".
absl::Status SqliteError(sqlite3* db, int code, std::string_view context);

// BEGIN IMMEDIATE on construction (taking the write lock up front, so a
// read-then-write transaction can never fail half-way on a lock upgrade);
// ROLLBACK on destruction unless Commit() succeeded.
class SqliteTransaction {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteTransaction>> Begin(SqliteDatabase& db);
  ~SqliteTransaction();
  absl::Status Commit();

 private:
  explicit SqliteTransaction(SqliteDatabase& db) : db_(db) {}
  SqliteDatabase& db_;
  bool finished_ = false;
};

}  // namespace ebpfcni
