#pragma once
// Userspace side of the conntrack map: removing the entries that must not
// outlive an endpoint.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <absl/status/statusor.h>

#include "common/net/ip_address.h"

namespace ebpfcni::datapath {

class ConntrackMap {
 public:
  explicit ConntrackMap(int fd) : fd_(fd) {}

  // Deletes every entry the endpoint owns, and every entry (of any
  // endpoint) whose tuple has one of `addresses` on either side: once the
  // endpoint is gone its addresses may be handed to a new pod, which must
  // not inherit a flow a peer allowed with the old one (a peer's egress
  // entry would otherwise let the new pod's "replies" in). Returns how many
  // entries were deleted.
  absl::StatusOr<size_t> DeleteEndpointFlows(uint32_t endpoint_id,
                                             const std::vector<IpAddress>& addresses);

 private:
  int fd_;
};

}  // namespace ebpfcni::datapath
