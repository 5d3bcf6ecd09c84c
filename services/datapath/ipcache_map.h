#pragma once
// The ipcache: IP prefix -> security identity, which the programs consult
// for the peer of every new flow. Whole addresses (/32, /128: pods, the
// node) go to an exact-match hash the programs look up first; shorter
// prefixes to an LPM trie. No match = the reserved world identity.
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
  IpCacheMap(int exact_fd, int trie_fd) : exact_fd_(exact_fd), trie_fd_(trie_fd) {}
  explicit IpCacheMap(const BpfObjects& bpf);

  absl::Status Upsert(const IpPrefix& prefix, uint32_t identity);
  // False when the prefix was not there.
  absl::StatusOr<bool> Delete(const IpPrefix& prefix);
  // Identity the programs would find for `address` (longest prefix match),
  // the family's world identity (EBPFCNI_IDENTITY_WORLD_IPV4/_IPV6) when
  // nothing covers it.
  absl::StatusOr<uint32_t> Lookup(const IpAddress& address) const;
  absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> List() const;

 private:
  int exact_fd_;
  int trie_fd_;
};

}  // namespace ebpfcni::datapath
