#include "cni/net/mac_address.h"

#include <cstdio>

namespace ebpfcni::net {

std::optional<MacAddress> ContainerMacFor(const std::vector<IpAddress>& addresses) {
  const IpAddress* source = nullptr;
  for (const IpAddress& address : addresses) {
    if (address.is_v4()) {
      source = &address;
      break;
    }
    if (source == nullptr) source = &address;
  }
  if (source == nullptr) return std::nullopt;
  const uint8_t* last4 = source->data() + source->size() - 4;
  // 0x0a: locally administered (bit 1) unicast (bit 0 clear); the same
  // convention Kubernetes network plugins use, so the MAC is recognisable.
  return MacAddress{0x0a, 0x58, last4[0], last4[1], last4[2], last4[3]};
}

MacAddress HostMacFor(const std::string& host_ifname) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : host_ifname) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  MacAddress mac;
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(hash >> (8 * i));
  mac[0] = static_cast<uint8_t>((mac[0] & 0xfc) | 0x02);
  return mac;
}

std::string MacToString(const MacAddress& mac) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

}  // namespace ebpfcni::net
