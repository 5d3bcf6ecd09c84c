#include "services/datapath/policy_store.h"

#include <filesystem>
#include <system_error>

#include <absl/strings/str_cat.h>
#include <nlohmann/json.hpp>

#include "services/datapath/atomic_file.h"

namespace ebpfcni::datapath {
namespace {

constexpr int kFormatVersion = 1;

}  // namespace

std::string PolicyStore::PathOf(uint32_t endpoint_id) const {
  return absl::StrCat(dir_, "/", endpoint_id, ".json");
}

absl::Status PolicyStore::Save(uint32_t endpoint_id, const EndpointPolicy& policy) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir_, ": ", ec.message()));
  // Rules as compact arrays: a policy can have 100k of them.
  nlohmann::json rules = nlohmann::json::array();
  for (const PolicyRule& rule : policy.rules) {
    rules.push_back({static_cast<int>(rule.direction), rule.peer_identity, rule.protocol,
                     rule.port, static_cast<int>(rule.action), rule.rule_id, rule.end_port});
  }
  nlohmann::json doc = {{"version", kFormatVersion},
                        {"ingress_isolated", policy.ingress_isolated},
                        {"egress_isolated", policy.egress_isolated},
                        {"verdict_events", policy.verdict_events},
                        {"rules_format", "direction,peer_identity,protocol,port,action,rule_id,end_port"},
                        {"rules", rules}};
  return WriteFileAtomically(PathOf(endpoint_id), doc.dump() + "\n");
}

absl::Status PolicyStore::Remove(uint32_t endpoint_id) {
  std::error_code ec;
  std::filesystem::remove(PathOf(endpoint_id), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("removing stored policy ", PathOf(endpoint_id), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<EndpointPolicy>> PolicyStore::Load(uint32_t endpoint_id) const {
  absl::StatusOr<std::string> contents = ReadWholeFile(PathOf(endpoint_id));
  if (absl::IsNotFound(contents.status())) return std::nullopt;
  if (!contents.ok()) return contents.status();
  EndpointPolicy policy;
  try {
    nlohmann::json doc = nlohmann::json::parse(*contents);
    if (doc.at("version").get<int>() != kFormatVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat(PathOf(endpoint_id), " has an unknown format version"));
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
      if (r.size() > 6) rule.end_port = r.at(6).get<uint16_t>();  // older copies had no ranges
      policy.rules.push_back(rule);
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(
        absl::StrCat("stored policy ", PathOf(endpoint_id), " is corrupt: ", e.what()));
  }
  return policy;
}

}  // namespace ebpfcni::datapath
