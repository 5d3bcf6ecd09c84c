#pragma once
// The datapath's persistent state in one SQLite database
// (<state_dir>/datapath/state.db): the endpoint registry (records and the
// id allocator) and the copy of each endpoint's policy.
//
// Why SQLite in WAL mode with synchronous=NORMAL: a commit is an append to
// the write-ahead log with no fsync (fsyncs happen at checkpoints, off the
// caller's path), which keeps CreateEndpoint — on every CNI ADD — cheap,
// while a commit that returned is in the kernel's page cache and therefore
// survives a crash (kill -9) of the daemon at any moment. (A power loss may
// lose the last commits; the next start reconciles endpoints with the
// interfaces that exist, and pods do not survive a power loss either.)
//
// Not thread-safe: the endpoint manager serialises every call under its lock.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "common/storage/sqlite_db.h"
#include "services/datapath/endpoint_policy.h"
#include "services/datapath/endpoint_registry.h"

namespace ebpfcni::datapath {

class StateStore {
 public:
  // Opens (creating) the database. `legacy_dir` (<state_dir>/datapath) is
  // where earlier versions kept endpoints.json and policies/<id>.json: on
  // the first open they are imported in one transaction and renamed to
  // *.imported, so nothing an upgrade finds is lost and nothing is imported
  // twice.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& path,
                                                          const std::string& legacy_dir);

  struct Endpoints {
    std::vector<EndpointRecord> records;
    uint32_t next_id = 1;
  };
  absl::StatusOr<Endpoints> LoadEndpoints();
  // Inserts or replaces the record (by key) and stores the allocator's next
  // id, in one commit.
  absl::Status PutEndpoint(const EndpointRecord& record, uint32_t next_id);
  absl::Status RemoveEndpoint(const EndpointKey& key);

  absl::Status SavePolicy(uint32_t endpoint_id, const EndpointPolicy& policy);
  absl::Status RemovePolicy(uint32_t endpoint_id);
  // Saves (or, for nullopt, removes) the copies of many endpoints' policies
  // in one commit: a batch of policy swaps costs one write-ahead-log append.
  absl::Status SavePolicies(
      const std::vector<std::pair<uint32_t, std::optional<EndpointPolicy>>>& policies);
  absl::StatusOr<std::optional<EndpointPolicy>> LoadPolicy(uint32_t endpoint_id);

  const std::string& path() const { return db_->path(); }

 private:
  explicit StateStore(std::unique_ptr<SqliteDatabase> db) : db_(std::move(db)) {}
  absl::Status CreateSchema();
  absl::Status ImportLegacy(const std::string& legacy_dir);

  std::unique_ptr<SqliteDatabase> db_;
};

// The policy copy's encoding (also what earlier versions wrote to
// policies/<id>.json): compact JSON, rules as arrays.
std::string EncodePolicy(const EndpointPolicy& policy);
absl::StatusOr<EndpointPolicy> DecodePolicy(const std::string& text);

}  // namespace ebpfcni::datapath
