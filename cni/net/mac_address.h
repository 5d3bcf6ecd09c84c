#pragma once
// Deterministic, locally administered unicast MAC addresses for the veth
// pair. Deterministic so that a pod's L2 identity is predictable when
// debugging (the container MAC spells its IPv4 address) and stable if the
// same attachment is recreated.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/net/ip_address.h"

namespace ebpfcni::net {

using MacAddress = std::array<uint8_t, 6>;

// 0a:58:<4 address bytes>: the IPv4 address when present, else the last four
// bytes of the IPv6 address; nullopt without addresses (kernel picks one).
std::optional<MacAddress> ContainerMacFor(const std::vector<IpAddress>& addresses);

// Derived from the host interface name, which is already unique per
// attachment; 0x02 set (locally administered), 0x01 clear (unicast).
MacAddress HostMacFor(const std::string& host_ifname);

std::string MacToString(const MacAddress& mac);

}  // namespace ebpfcni::net
