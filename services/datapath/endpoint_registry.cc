#include "services/datapath/endpoint_registry.h"

#include <set>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/state_store.h"

namespace ebpfcni::datapath {

absl::StatusOr<std::unique_ptr<EndpointRegistry>> EndpointRegistry::Open(StateStore* store) {
  std::unique_ptr<EndpointRegistry> registry(new EndpointRegistry(store));
  absl::StatusOr<StateStore::Endpoints> stored = store->LoadEndpoints();
  if (!stored.ok()) return stored.status();
  registry->next_id_ = stored->next_id;
  for (EndpointRecord& record : stored->records) {
    EndpointKey key = record.key;
    registry->records_[key] = std::move(record);
  }
  return registry;
}

absl::StatusOr<uint32_t> EndpointRegistry::AllocateId(const std::set<uint32_t>* avoid) {
  std::set<uint32_t> used;
  for (const auto& [key, record] : records_) used.insert(record.endpoint_id);
  uint32_t candidate = next_id_;
  for (uint32_t tries = 0; tries < EBPFCNI_MAX_ENDPOINT_ID; ++tries) {
    if (candidate < 1 || candidate > EBPFCNI_MAX_ENDPOINT_ID) candidate = 1;
    if (!used.contains(candidate) && (avoid == nullptr || !avoid->contains(candidate))) {
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

bool EndpointRegistry::IdInUse(uint32_t endpoint_id) const {
  for (const auto& [key, record] : records_) {
    if (record.endpoint_id == endpoint_id) return true;
  }
  return false;
}

absl::StatusOr<EndpointRecord> EndpointRegistry::Put(EndpointRecord record,
                                                     uint32_t preferred_id,
                                                     const std::set<uint32_t>* avoid) {
  uint32_t previous_next_id = next_id_;
  auto existing = records_.find(record.key);
  if (existing != records_.end()) {
    record.endpoint_id = existing->second.endpoint_id;
  } else if (preferred_id != 0 && preferred_id <= EBPFCNI_MAX_ENDPOINT_ID &&
             !IdInUse(preferred_id) && (avoid == nullptr || !avoid->contains(preferred_id))) {
    record.endpoint_id = preferred_id;
  } else {
    absl::StatusOr<uint32_t> id = AllocateId(avoid);
    if (!id.ok()) return id.status();
    record.endpoint_id = *id;
  }
  if (absl::Status status = store_->PutEndpoint(record, next_id_); !status.ok()) {
    // Memory stays in line with what is stored.
    next_id_ = previous_next_id;
    return status;
  }
  records_[record.key] = record;
  return record;
}

absl::StatusOr<bool> EndpointRegistry::Remove(const EndpointKey& key) {
  auto it = records_.find(key);
  if (it == records_.end()) return false;
  if (absl::Status status = store_->RemoveEndpoint(key); !status.ok()) return status;
  records_.erase(it);
  return true;
}

}  // namespace ebpfcni::datapath
