#include "services/policy/compiler/cidr_identities.h"

#include "services/identity/reserved_identities.h"

namespace ebpfcni::policy {

std::pair<uint32_t, bool> CidrIdentities::Acquire(const IpPrefix& prefix) {
  if (IsWorld(prefix)) {
    return {static_cast<uint32_t>(identity::WorldOf(prefix.address().is_v4())), false};
  }
  auto [it, inserted] = entries_.try_emplace(prefix, Entry{0, 0});
  if (inserted) {
    it->second.id = next_id_++;
    touched_.insert(prefix);
  }
  ++it->second.references;
  return {it->second.id, inserted};
}

std::optional<uint32_t> CidrIdentities::Release(const IpPrefix& prefix) {
  if (IsWorld(prefix)) return std::nullopt;
  auto it = entries_.find(prefix);
  if (it == entries_.end() || --it->second.references > 0) return std::nullopt;
  uint32_t id = it->second.id;
  entries_.erase(it);
  touched_.insert(prefix);
  return id;
}

uint32_t CidrIdentities::Lookup(const IpAddress& address) const {
  uint32_t best = 0;
  int best_length = -1;
  for (const auto& [prefix, entry] : entries_) {
    if (prefix.family() == address.family() && prefix.length() > best_length && prefix.Contains(address)) {
      best = entry.id;
      best_length = prefix.length();
    }
  }
  return best;
}

std::vector<std::pair<IpPrefix, uint32_t>> CidrIdentities::All() const {
  std::vector<std::pair<IpPrefix, uint32_t>> all;
  for (const auto& [prefix, entry] : entries_) all.emplace_back(prefix, entry.id);
  return all;
}

std::pair<std::vector<std::pair<IpPrefix, uint32_t>>, std::vector<IpPrefix>> CidrIdentities::TakeChanges() {
  std::vector<std::pair<IpPrefix, uint32_t>> upserts;
  std::vector<IpPrefix> deletes;
  for (const IpPrefix& prefix : touched_) {
    auto current = entries_.find(prefix);
    auto installed = installed_.find(prefix);
    if (current != entries_.end()) {
      if (installed == installed_.end() || installed->second != current->second.id) {
        upserts.emplace_back(prefix, current->second.id);
        installed_[prefix] = current->second.id;
      }
    } else if (installed != installed_.end()) {
      deletes.push_back(prefix);
      installed_.erase(installed);
    }
  }
  touched_.clear();
  return {std::move(upserts), std::move(deletes)};
}

}  // namespace ebpfcni::policy
