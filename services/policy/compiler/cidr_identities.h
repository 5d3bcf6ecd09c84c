#pragma once
// Node-local identities of the prefixes that ipBlock peers name.
//
// Every distinct prefix appearing in an ipBlock cidr or except gets its own
// identity (from kFirstCidrIdentity up), installed in the datapath's ipcache.
// The ipcache's longest-prefix match then gives an address the identity of
// the most specific listed prefix containing it, so an ipBlock (P except E…)
// is exactly the set of prefix identities inside P and outside every E.
// 0.0.0.0/0 and ::/0 are the reserved identities world-ipv4 and world-ipv6,
// which the datapath gives every address of that family it knows nothing
// about; they are never installed.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "common/net/ip_address.h"

namespace ebpfcni::policy {

class CidrIdentities {
 public:
  explicit CidrIdentities(uint32_t first_id) : next_id_(first_id) {}

  // Takes a reference on `prefix` (host bits cleared). Returns its identity
  // and whether it was just allocated.
  std::pair<uint32_t, bool> Acquire(const IpPrefix& prefix);
  // Drops a reference; returns the identity if this was the last one (the
  // identity no longer exists).
  std::optional<uint32_t> Release(const IpPrefix& prefix);

  // The identity of the longest listed prefix containing `address`, 0 if none.
  uint32_t Lookup(const IpAddress& address) const;
  // prefix -> identity of every listed (non-/0) prefix.
  std::vector<std::pair<IpPrefix, uint32_t>> All() const;
  size_t size() const { return entries_.size(); }

  // The (un)installs needed since the last call: prefixes allocated then
  // released in between cancel out.
  std::pair<std::vector<std::pair<IpPrefix, uint32_t>>, std::vector<IpPrefix>> TakeChanges();

  static bool IsWorld(const IpPrefix& prefix) { return prefix.length() == 0; }

 private:
  struct Entry {
    uint32_t id;
    int references;
  };
  std::map<IpPrefix, Entry> entries_;
  std::map<IpPrefix, uint32_t> installed_;  // what the last TakeChanges reported
  std::set<IpPrefix> touched_;
  // Identities are never reused, so a stale rule cannot match a new prefix.
  uint32_t next_id_;
};

}  // namespace ebpfcni::policy
