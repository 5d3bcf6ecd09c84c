#include "services/datapath/state_store.h"

#include <filesystem>
#include <map>
#include <system_error>
#include <variant>
#include <vector>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "services/datapath/atomic_file.h"

namespace ebpfcni::datapath {
namespace {

constexpr int kSchemaVersion = 1;
constexpr int kLegacyRegistryVersion = 1;
constexpr int kPolicyFormatVersion = 1;

nlohmann::json RecordToJson(const EndpointRecord& r) {
  return {
      {"container_id", r.key.container_id},
      {"interface_name", r.key.interface_name},
      {"endpoint_id", r.endpoint_id},
      {"host_ifindex", r.host_ifindex},
      {"host_interface_name", r.host_interface_name},
      {"netns_path", r.netns_path},
      {"addresses", r.addresses},
      {"pod_namespace", r.pod_namespace},
      {"pod_name", r.pod_name},
      {"identity", r.identity},
      {"tc_attach", TcAttachModeName(r.attach_mode)},
  };
}

EndpointRecord RecordFromJson(const nlohmann::json& j) {
  EndpointRecord r;
  r.key.container_id = j.at("container_id").get<std::string>();
  r.key.interface_name = j.at("interface_name").get<std::string>();
  r.endpoint_id = j.at("endpoint_id").get<uint32_t>();
  r.host_ifindex = j.at("host_ifindex").get<uint32_t>();
  r.host_interface_name = j.value("host_interface_name", "");
  r.netns_path = j.value("netns_path", "");
  r.addresses = j.value("addresses", std::vector<std::string>{});
  r.pod_namespace = j.value("pod_namespace", "");
  r.pod_name = j.value("pod_name", "");
  r.identity = j.value("identity", 0u);
  // Absent (older versions) or unknown: the datapath's default mode.
  r.attach_mode = ParseTcAttachMode(j.value("tc_attach", "auto")).value_or(TcAttachMode::kAuto);
  return r;
}

absl::Status Run(SqliteDatabase& db, std::string_view sql,
                 const std::vector<std::variant<int64_t, std::string>>& params) {
  absl::StatusOr<SqliteStatement> statement = db.Prepare(sql);
  if (!statement.ok()) return statement.status();
  for (size_t i = 0; i < params.size(); ++i) {
    if (const int64_t* number = std::get_if<int64_t>(&params[i])) {
      statement->Bind(static_cast<int>(i + 1), *number);
    } else {
      statement->Bind(static_cast<int>(i + 1), std::get<std::string>(params[i]));
    }
  }
  return statement->Run();
}

}  // namespace

std::string EncodePolicy(const EndpointPolicy& policy) {
  // Rules as compact arrays: a policy can have 100k of them.
  nlohmann::json rules = nlohmann::json::array();
  for (const PolicyRule& rule : policy.rules) {
    rules.push_back({static_cast<int>(rule.direction), rule.peer_identity, rule.protocol,
                     rule.port, static_cast<int>(rule.action), rule.rule_id, rule.end_port});
  }
  nlohmann::json doc = {
      {"version", kPolicyFormatVersion},
      {"ingress_isolated", policy.ingress_isolated},
      {"egress_isolated", policy.egress_isolated},
      {"verdict_events", policy.verdict_events},
      {"rules_format", "direction,peer_identity,protocol,port,action,rule_id,end_port"},
      {"rules", rules}};
  return doc.dump();
}

absl::StatusOr<EndpointPolicy> DecodePolicy(const std::string& text) {
  EndpointPolicy policy;
  try {
    nlohmann::json doc = nlohmann::json::parse(text);
    if (doc.at("version").get<int>() != kPolicyFormatVersion) {
      return absl::FailedPreconditionError("unknown policy format version");
    }
    policy.ingress_isolated = doc.at("ingress_isolated").get<bool>();
    policy.egress_isolated = doc.at("egress_isolated").get<bool>();
    policy.verdict_events = doc.value("verdict_events", false);
    for (const nlohmann::json& r : doc.at("rules")) {
      PolicyRule rule;
      rule.direction = static_cast<PolicyDirection>(r.at(0).get<int>());
      rule.peer_identity = r.at(1).get<uint32_t>();
      rule.protocol = r.at(2).get<uint8_t>();
      rule.port = r.at(3).get<uint16_t>();
      rule.action = static_cast<PolicyAction>(r.at(4).get<int>());
      rule.rule_id = r.at(5).get<uint32_t>();
      if (r.size() > 6) rule.end_port = r.at(6).get<uint16_t>();  // older copies: no ranges
      policy.rules.push_back(rule);
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("corrupt policy copy: ", e.what()));
  }
  return policy;
}

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& path,
                                                             const std::string& legacy_dir) {
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create state directory ", parent.string(), ": ", ec.message()));
    }
  }
  absl::StatusOr<std::unique_ptr<SqliteDatabase>> db = SqliteDatabase::Open(path);
  if (!db.ok()) return db.status();
  std::unique_ptr<StateStore> store(new StateStore(*std::move(db)));
  if (absl::Status status = store->CreateSchema(); !status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("datapath state ", path, ": ", status.message(),
                                     "; fix or move the file away, then restart (endpoints it "
                                     "listed will not be cleaned up)"));
  }
  if (absl::Status status = store->ImportLegacy(legacy_dir); !status.ok()) return status;
  return store;
}

absl::Status StateStore::CreateSchema() {
  // WAL + synchronous=NORMAL: commits append to the log without fsync and
  // survive a crash of this process (see the header).
  if (absl::Status status = db_->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
      !status.ok()) {
    return status;
  }
  absl::StatusOr<int64_t> version = db_->QueryInt64("PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "schema version ", *version, " is newer than this build's ", kSchemaVersion));
  }
  if (*version == kSchemaVersion) return absl::OkStatus();
  return db_->Exec(absl::StrCat(
      "BEGIN IMMEDIATE;"
      "CREATE TABLE IF NOT EXISTS endpoints ("
      "  container_id TEXT NOT NULL, interface_name TEXT NOT NULL, record TEXT NOT NULL,"
      "  PRIMARY KEY (container_id, interface_name));"
      "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS policies (endpoint_id INTEGER PRIMARY KEY, policy TEXT NOT NULL);"
      "PRAGMA user_version = ",
      kSchemaVersion, ";COMMIT;"));
}

absl::Status StateStore::ImportLegacy(const std::string& legacy_dir) {
  const std::string registry_path = absl::StrCat(legacy_dir, "/endpoints.json");
  const std::string policies_dir = absl::StrCat(legacy_dir, "/policies");
  std::error_code ec;
  bool have_registry = std::filesystem::exists(registry_path, ec);
  bool have_policies = std::filesystem::is_directory(policies_dir, ec);
  if (!have_registry && !have_policies) return absl::OkStatus();

  absl::StatusOr<std::unique_ptr<SqliteTransaction>> transaction = SqliteTransaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  size_t endpoints = 0, policies = 0;
  if (have_registry) {
    absl::StatusOr<std::string> contents = ReadWholeFile(registry_path);
    if (!contents.ok()) return contents.status();
    try {
      nlohmann::json doc = nlohmann::json::parse(*contents);
      int version = doc.at("version").get<int>();
      if (version != kLegacyRegistryVersion) {
        return absl::FailedPreconditionError(absl::StrCat(
            registry_path, " has format version ", version, ", this build imports ",
            kLegacyRegistryVersion));
      }
      for (const nlohmann::json& item : doc.at("endpoints")) {
        EndpointRecord record = RecordFromJson(item);
        if (absl::Status status = Run(*db_,
                                      "INSERT OR REPLACE INTO endpoints VALUES (?1, ?2, ?3)",
                                      {record.key.container_id, record.key.interface_name,
                                       RecordToJson(record).dump()});
            !status.ok()) {
          return status;
        }
        ++endpoints;
      }
      if (absl::Status status =
              Run(*db_, "INSERT OR REPLACE INTO settings VALUES ('next_id', ?1)",
                  {int64_t{doc.value("next_id", 1u)}});
          !status.ok()) {
        return status;
      }
    } catch (const nlohmann::json::exception& e) {
      return absl::DataLossError(absl::StrCat(
          "endpoint registry ", registry_path, " is corrupt (", e.what(),
          "); fix or move it away, then restart (endpoints it listed will not be cleaned up)"));
    }
  }
  if (have_policies) {
    for (const auto& entry : std::filesystem::directory_iterator(policies_dir, ec)) {
      uint32_t endpoint_id = 0;
      if (entry.path().extension() != ".json" ||
          !absl::SimpleAtoi(entry.path().stem().string(), &endpoint_id)) {
        continue;
      }
      absl::StatusOr<std::string> contents = ReadWholeFile(entry.path().string());
      if (!contents.ok()) return contents.status();
      absl::StatusOr<EndpointPolicy> policy = DecodePolicy(*contents);
      if (!policy.ok()) {
        // The kernel's copy is what counts; a bad backup is not worth
        // refusing to start over.
        spdlog::warn("not importing {}: {}", entry.path().string(), policy.status().ToString());
        continue;
      }
      if (absl::Status status = Run(*db_, "INSERT OR REPLACE INTO policies VALUES (?1, ?2)",
                                    {int64_t{endpoint_id}, EncodePolicy(*policy)});
          !status.ok()) {
        return status;
      }
      ++policies;
    }
    if (ec) return absl::InternalError(absl::StrCat("listing ", policies_dir, ": ", ec.message()));
  }
  if (absl::Status status = (*transaction)->Commit(); !status.ok()) return status;
  // Only after the commit: a crash before the renames imports the same
  // files again, which changes nothing.
  if (have_registry) std::filesystem::rename(registry_path, registry_path + ".imported", ec);
  if (!ec && have_policies) std::filesystem::rename(policies_dir, policies_dir + ".imported", ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("renaming the imported files in ", legacy_dir, ": ",
                                            ec.message()));
  }
  spdlog::info("imported {} endpoint(s) and {} policy copies from {} into {}", endpoints,
               policies, legacy_dir, db_->path());
  return absl::OkStatus();
}

absl::StatusOr<StateStore::Endpoints> StateStore::LoadEndpoints() {
  Endpoints endpoints;
  absl::StatusOr<SqliteStatement> statement =
      db_->Prepare("SELECT container_id, interface_name, record FROM endpoints");
  if (!statement.ok()) return statement.status();
  while (true) {
    absl::StatusOr<bool> row = statement->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    try {
      endpoints.records.push_back(RecordFromJson(nlohmann::json::parse(statement->ColumnText(2))));
    } catch (const nlohmann::json::exception& e) {
      return absl::DataLossError(absl::StrCat(
          "endpoint ", statement->ColumnText(0), "/", statement->ColumnText(1), " in ",
          db_->path(), " is corrupt (", e.what(), ")"));
    }
  }
  absl::StatusOr<SqliteStatement> next =
      db_->Prepare("SELECT value FROM settings WHERE name = 'next_id'");
  if (!next.ok()) return next.status();
  absl::StatusOr<bool> row = next->Step();
  if (!row.ok()) return row.status();
  if (*row) endpoints.next_id = static_cast<uint32_t>(next->ColumnInt64(0));
  return endpoints;
}

absl::Status StateStore::PutEndpoint(const EndpointRecord& record, uint32_t next_id) {
  absl::StatusOr<std::unique_ptr<SqliteTransaction>> transaction = SqliteTransaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  if (absl::Status status = Run(*db_, "INSERT OR REPLACE INTO endpoints VALUES (?1, ?2, ?3)",
                                {record.key.container_id, record.key.interface_name,
                                 RecordToJson(record).dump()});
      !status.ok()) {
    return status;
  }
  if (absl::Status status = Run(*db_, "INSERT OR REPLACE INTO settings VALUES ('next_id', ?1)",
                                {int64_t{next_id}});
      !status.ok()) {
    return status;
  }
  return (*transaction)->Commit();
}

absl::Status StateStore::RemoveEndpoint(const EndpointKey& key) {
  return Run(*db_, "DELETE FROM endpoints WHERE container_id = ?1 AND interface_name = ?2",
             {key.container_id, key.interface_name});
}

absl::Status StateStore::SavePolicy(uint32_t endpoint_id, const EndpointPolicy& policy) {
  return Run(*db_, "INSERT OR REPLACE INTO policies VALUES (?1, ?2)",
             {int64_t{endpoint_id}, EncodePolicy(policy)});
}

absl::Status StateStore::SavePolicies(
    const std::vector<std::pair<uint32_t, std::optional<EndpointPolicy>>>& policies) {
  if (policies.empty()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<SqliteTransaction>> transaction = SqliteTransaction::Begin(*db_);
  if (!transaction.ok()) return transaction.status();
  for (const auto& [endpoint_id, policy] : policies) {
    absl::Status status = policy.has_value() ? SavePolicy(endpoint_id, *policy)
                                             : RemovePolicy(endpoint_id);
    if (!status.ok()) return status;
  }
  return (*transaction)->Commit();
}

absl::Status StateStore::RemovePolicy(uint32_t endpoint_id) {
  return Run(*db_, "DELETE FROM policies WHERE endpoint_id = ?1", {int64_t{endpoint_id}});
}

absl::StatusOr<std::optional<EndpointPolicy>> StateStore::LoadPolicy(uint32_t endpoint_id) {
  absl::StatusOr<SqliteStatement> statement =
      db_->Prepare("SELECT policy FROM policies WHERE endpoint_id = ?1");
  if (!statement.ok()) return statement.status();
  statement->Bind(1, int64_t{endpoint_id});
  absl::StatusOr<bool> row = statement->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  absl::StatusOr<EndpointPolicy> policy = DecodePolicy(statement->ColumnText(0));
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat("policy of endpoint id ", endpoint_id, " in ", db_->path(),
                                     ": ", policy.status().message()));
  }
  return *std::move(policy);
}

}  // namespace ebpfcni::datapath
