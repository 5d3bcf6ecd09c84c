#include "services/datapath/endpoint_registry.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include <absl/strings/str_cat.h>
#include <nlohmann/json.hpp>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/atomic_file.h"

namespace ebpfcni::datapath {
namespace {

constexpr int kFormatVersion = 1;

nlohmann::json ToJson(const EndpointRecord& r) {
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
  };
}

EndpointRecord FromJson(const nlohmann::json& j) {
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
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EndpointRegistry>> EndpointRegistry::Open(const std::string& path) {
  std::unique_ptr<EndpointRegistry> registry(new EndpointRegistry(path));
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create state directory ", parent.string(), ": ", ec.message()));
    }
  }
  if (absl::Status status = registry->Load(); !status.ok()) return status;
  return registry;
}

absl::Status EndpointRegistry::Load() {
  absl::StatusOr<std::string> contents = ReadWholeFile(path_);
  if (absl::IsNotFound(contents.status())) return absl::OkStatus();  // first start
  if (!contents.ok()) return contents.status();
  try {
    nlohmann::json doc = nlohmann::json::parse(*contents);
    int version = doc.at("version").get<int>();
    if (version != kFormatVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          path_, " has format version ", version, ", this build reads ", kFormatVersion));
    }
    next_id_ = doc.value("next_id", 1u);
    for (const nlohmann::json& item : doc.at("endpoints")) {
      EndpointRecord record = FromJson(item);
      records_[record.key] = std::move(record);
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(
        "endpoint registry ", path_, " is corrupt (", e.what(),
        "); fix or move it away, then restart (endpoints it listed will not be cleaned up)"));
  }
  return absl::OkStatus();
}

absl::Status EndpointRegistry::Save() const {
  nlohmann::json endpoints = nlohmann::json::array();
  for (const auto& [key, record] : records_) endpoints.push_back(ToJson(record));
  nlohmann::json doc = {
      {"version", kFormatVersion}, {"next_id", next_id_}, {"endpoints", endpoints}};
  return WriteFileAtomically(path_, doc.dump(2) + "\n");
}

absl::StatusOr<uint32_t> EndpointRegistry::AllocateId() {
  std::set<uint32_t> used;
  for (const auto& [key, record] : records_) used.insert(record.endpoint_id);
  uint32_t candidate = next_id_;
  for (uint32_t tries = 0; tries < EBPFCNI_MAX_ENDPOINT_ID; ++tries) {
    if (candidate < 1 || candidate > EBPFCNI_MAX_ENDPOINT_ID) candidate = 1;
    if (!used.contains(candidate)) {
      next_id_ = candidate + 1;
      return candidate;
    }
    ++candidate;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "all ", EBPFCNI_MAX_ENDPOINT_ID, " endpoint ids are in use; delete or garbage-collect "
      "endpoints of removed pods"));
}

std::optional<EndpointRecord> EndpointRegistry::Find(const EndpointKey& key) const {
  auto it = records_.find(key);
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

std::optional<EndpointRecord> EndpointRegistry::FindByIfindex(uint32_t ifindex) const {
  for (const auto& [key, record] : records_) {
    if (record.host_ifindex == ifindex) return record;
  }
  return std::nullopt;
}

std::vector<EndpointRecord> EndpointRegistry::List() const {
  std::vector<EndpointRecord> list;
  list.reserve(records_.size());
  for (const auto& [key, record] : records_) list.push_back(record);
  return list;
}

absl::StatusOr<EndpointRecord> EndpointRegistry::Put(EndpointRecord record) {
  uint32_t previous_next_id = next_id_;
  auto existing = records_.find(record.key);
  if (existing != records_.end()) {
    record.endpoint_id = existing->second.endpoint_id;
  } else {
    absl::StatusOr<uint32_t> id = AllocateId();
    if (!id.ok()) return id.status();
    record.endpoint_id = *id;
  }
  std::optional<EndpointRecord> replaced;
  if (existing != records_.end()) replaced = existing->second;
  records_[record.key] = record;
  if (absl::Status status = Save(); !status.ok()) {
    // Keep memory in line with the file that is still on disk.
    if (replaced.has_value()) {
      records_[record.key] = *replaced;
    } else {
      records_.erase(record.key);
    }
    next_id_ = previous_next_id;
    return status;
  }
  return record;
}

absl::StatusOr<bool> EndpointRegistry::Remove(const EndpointKey& key) {
  auto it = records_.find(key);
  if (it == records_.end()) return false;
  EndpointRecord removed = it->second;
  records_.erase(it);
  if (absl::Status status = Save(); !status.ok()) {
    records_[key] = std::move(removed);
    return status;
  }
  return true;
}

}  // namespace ebpfcni::datapath
