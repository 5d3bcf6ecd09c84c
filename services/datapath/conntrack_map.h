#pragma once
// Userspace side of the conntrack tables (conntrack4, conntrack6): removing
// the entries that must not outlive an endpoint or its interface, and
// reading them back for tests and tools.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <absl/status/statusor.h>

#include "common/net/ip_address.h"

namespace ebpfcni::datapath {

class BpfObjects;

// One entry of either table, family-neutral.
struct ConntrackEntry {
  uint8_t family = 0;  // EBPFCNI_FAMILY_*
  uint8_t protocol = 0;
  uint8_t scope = 0;  // EBPFCNI_CT_SCOPE_*
  IpAddress source;
  IpAddress destination;
  uint16_t source_port = 0;  // host order
  uint16_t destination_port = 0;
  uint32_t ifindex = 0;      // host-side interface the entry belongs to
  uint32_t endpoint_id = 0;  // endpoint its packets are counted on
  uint32_t rule_id = 0;
};

class ConntrackMap {
 public:
  ConntrackMap(int v4_fd, int v6_fd) : v4_fd_(v4_fd), v6_fd_(v6_fd) {}
  explicit ConntrackMap(const BpfObjects& bpf);

  // Deletes every entry made for the endpoint, and every entry (of any
  // endpoint) whose tuple has one of `addresses` on either side: once the
  // endpoint is gone its addresses may be handed to a new pod, which must
  // not inherit a flow a peer allowed with the old one (a peer's egress
  // entry would otherwise let the new pod's "replies" in). Returns how many
  // entries were deleted.
  absl::StatusOr<size_t> DeleteEndpointFlows(uint32_t endpoint_id,
                                             const std::vector<IpAddress>& addresses);
  // Deletes every entry of host interface `ifindex`. Entries are keyed by
  // interface so that established packets need no endpoint lookup; before
  // the kernel may hand the index to another veth (which would run the same
  // programs) the interface's entries must go.
  absl::StatusOr<size_t> DeleteInterfaceFlows(uint32_t ifindex);

  // Every entry of both tables (bounded by their capacity).
  absl::StatusOr<std::vector<ConntrackEntry>> List() const;

 private:
  int v4_fd_;
  int v6_fd_;
};

}  // namespace ebpfcni::datapath
