#pragma once
// The ipcache: IP prefix -> security identity, which the programs consult
// for the peer of every new flow. Whole addresses (/32, /128: pods, the
// node) go to an exact-match hash per family (ipcache4 keyed by the 4
// address bytes, ipcache_exact for IPv6) that the programs look up first;
// shorter prefixes to an LPM trie. No match = the family's world identity.
//
// Earlier versions kept whole IPv4 addresses in ipcache_exact, and before
// that in the trie. Their programs run until the new ones replace them, so
// such copies are kept current (never created) and go on delete.
#include <cstdint>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "common/net/ip_address.h"

namespace ebpfcni::datapath {

class BpfObjects;

class IpCacheMap {
 public:
  IpCacheMap(int exact4_fd, int exact_fd, int trie_fd)
      : exact4_fd_(exact4_fd), exact_fd_(exact_fd), trie_fd_(trie_fd) {}
  explicit IpCacheMap(const BpfObjects& bpf);

  // At start, before the new programs are attached: copies the whole IPv4
  // addresses an earlier version wrote to ipcache_exact into ipcache4 (the
  // copies stay for the earlier programs). Returns how many were copied.
  absl::StatusOr<size_t> AdoptEarlierIpv4Entries();

  absl::Status Upsert(const IpPrefix& prefix, uint32_t identity);
  // False when the prefix was not there.
  absl::StatusOr<bool> Delete(const IpPrefix& prefix);
  // Identity the programs would find for `address` (longest prefix match),
  // the family's world identity (EBPFCNI_IDENTITY_WORLD_IPV4/_IPV6) when
  // nothing covers it.
  absl::StatusOr<uint32_t> Lookup(const IpAddress& address) const;
  absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> List() const;

 private:
  int exact4_fd_;
  int exact_fd_;
  int trie_fd_;
};

}  // namespace ebpfcni::datapath
