#pragma once
// Waiting for the IPv6 stack to be able to answer neighbour solicitations
// for an address.
//
// Neighbour solicitations go to the target's solicited-node multicast group
// (ff02::1:ffXX:XXXX). The kernel joins that group for a new address in a
// work item that runs after the address is added (and again when the link
// gains carrier), even with IFA_F_NODAD. Until then solicitations for the
// address are dropped as foreign multicast, and the first packet to a fresh
// pod waits a full neighbour retransmit (1 s). Waiting for the join at setup
// time keeps the pod's first connections fast.
#include <chrono>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include "common/net/ip_address.h"

namespace ebpfcni::net {

// ff02::1:ff00:0/104 plus the low 24 bits of address (an IPv6 address).
IpAddress SolicitedNodeGroup(const IpAddress& address);

// Polls /proc/thread-self/net/igmp6 (the calling thread's namespace) until
// ifname has joined the solicited-node group of every IPv6 address in
// addresses, or timeout passes; returns whether it did. IPv4 addresses are
// ignored.
absl::StatusOr<bool> WaitForSolicitedNodeGroups(const std::string& ifname,
                                                const std::vector<IpAddress>& addresses,
                                                std::chrono::milliseconds timeout);

}  // namespace ebpfcni::net
