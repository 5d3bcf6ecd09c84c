#pragma once
// The ipcache: an LPM trie from IP prefix to security identity that the
// programs consult for the peer of every new flow. No match = the reserved
// world identity.
#include <cstdint>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "common/net/ip_address.h"

namespace ebpfcni::datapath {

class IpCacheMap {
 public:
  explicit IpCacheMap(int fd) : fd_(fd) {}

  absl::Status Upsert(const IpPrefix& prefix, uint32_t identity);
  // False when the prefix was not there.
  absl::StatusOr<bool> Delete(const IpPrefix& prefix);
  // Identity the programs would find for `address` (longest prefix match),
  // EBPFCNI_IDENTITY_WORLD when nothing covers it.
  absl::StatusOr<uint32_t> Lookup(const IpAddress& address) const;
  absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> List() const;

 private:
  int fd_;
};

}  // namespace ebpfcni::datapath
