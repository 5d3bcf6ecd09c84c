#pragma once
// Reserved security identities: fixed numbers, the same in every cluster.
// The numbers are Cilium's (a fact of its wire format, kept so operators
// who know one can read the other); allocated identities start at 256.
#include <cstdint>
#include <optional>
#include <string_view>

namespace ebpfcni::identity {

enum class ReservedIdentity : uint32_t {
  kUnknown = 0,
  kHost = 1,
  kWorld = 2,
  kUnmanaged = 3,
  kHealth = 4,
  kInit = 5,
  kRemoteNode = 6,
  kKubeApiServer = 7,
  // Addresses outside the cluster, one identity per family, so a policy
  // that allows ::/0 does not also admit every IPv4 address outside the
  // cluster (and 0.0.0.0/0 no IPv6 one). `world` (2) stays the name of
  // both in labels; the datapath gives a miss one of these.
  kWorldIpv4 = 9,
  kWorldIpv6 = 10,
};

inline constexpr uint32_t kFirstAllocatableIdentity = 256;
// Cluster-local identities fit in 16 bits (the upper bits are left for a
// cluster id, as Cilium does for cluster mesh).
inline constexpr uint32_t kLastAllocatableIdentity = 65535;

struct ReservedIdentityInfo {
  ReservedIdentity id;
  std::string_view name;  // label "reserved:<name>"
};

inline constexpr ReservedIdentityInfo kReservedIdentities[] = {
    {ReservedIdentity::kHost, "host"},
    {ReservedIdentity::kWorld, "world"},
    {ReservedIdentity::kUnmanaged, "unmanaged"},
    {ReservedIdentity::kHealth, "health"},
    {ReservedIdentity::kInit, "init"},
    {ReservedIdentity::kRemoteNode, "remote-node"},
    {ReservedIdentity::kKubeApiServer, "kube-apiserver"},
    {ReservedIdentity::kWorldIpv4, "world-ipv4"},
    {ReservedIdentity::kWorldIpv6, "world-ipv6"},
};

// The world identity of an address family: what the datapath gives an
// address no pod, node or listed prefix covers.
inline constexpr ReservedIdentity WorldOf(bool ipv4) {
  return ipv4 ? ReservedIdentity::kWorldIpv4 : ReservedIdentity::kWorldIpv6;
}

inline std::optional<ReservedIdentityInfo> FindReserved(uint32_t id) {
  for (const auto& info : kReservedIdentities) {
    if (static_cast<uint32_t>(info.id) == id) return info;
  }
  return std::nullopt;
}

inline std::optional<ReservedIdentityInfo> FindReservedByName(std::string_view name) {
  for (const auto& info : kReservedIdentities) {
    if (info.name == name) return info;
  }
  return std::nullopt;
}

}  // namespace ebpfcni::identity
