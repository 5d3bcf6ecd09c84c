#include "services/ipam/pool.h"

#include <absl/strings/str_cat.h>

namespace ebpfcni::ipam {

absl::StatusOr<Pool> Pool::Create(std::string name, const IpPrefix& cidr) {
  const IpPrefix network(cidr.Network(), cidr.length());
  const int host_bits = network.address().max_prefix_length() - network.length();
  uint64_t capacity;
  if (host_bits >= 64) {
    // 2^64 minus a couple of reserved addresses is still above the cap.
    capacity = kMaxCapacity;
  } else {
    const uint64_t total = uint64_t{1} << host_bits;
    // Network address and gateway, plus the broadcast address for IPv4.
    const uint64_t reserved = network.family() == IpFamily::kIpv4 ? 3 : 2;
    if (total <= reserved) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pool ", name, ": ", cidr.ToString(), " is too small: after the network address, the gateway",
          network.family() == IpFamily::kIpv4 ? " and the broadcast address" : "",
          " it has no address left for pods; use at most a /",
          network.family() == IpFamily::kIpv4 ? 30 : 126));
    }
    capacity = std::min(total - reserved, kMaxCapacity);
  }
  return Pool(std::move(name), network, capacity);
}

absl::StatusOr<Pool> Pool::Parse(std::string name, std::string_view cidr) {
  auto prefix = IpPrefix::Parse(cidr);
  if (!prefix.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("pool ", name, ": ", prefix.status().message()));
  }
  return Create(std::move(name), *prefix);
}

IpAddress Pool::gateway() const {
  return IpAddress::FromNumber(family(), cidr_.address().ToNumber() + 1);
}

IpAddress Pool::AddressAt(uint64_t index) const {
  return IpAddress::FromNumber(family(), cidr_.address().ToNumber() + kFirstUsableOffset + index);
}

std::optional<uint64_t> Pool::IndexOf(const IpAddress& address) const {
  if (!cidr_.Contains(address)) return std::nullopt;
  const unsigned __int128 offset = address.ToNumber() - cidr_.address().ToNumber();
  if (offset < kFirstUsableOffset) return std::nullopt;
  const unsigned __int128 index = offset - kFirstUsableOffset;
  // Beyond the capacity lies the IPv4 broadcast address (or, for capped
  // IPv6 pools, addresses this pool never hands out).
  if (index >= capacity_) return std::nullopt;
  return static_cast<uint64_t>(index);
}

bool Pool::IsReserved(const IpAddress& address) const {
  return cidr_.Contains(address) && !IndexOf(address).has_value();
}

absl::StatusOr<std::vector<Pool>> ConfigurePools(std::string_view ipv4_cidr, std::string_view ipv6_cidr) {
  struct Wanted {
    const char* name;
    const char* flag;
    std::string cidr;
    IpFamily family;
  };
  const Wanted wanted[] = {{kDefaultIpv4PoolName, "--pool_cidr", std::string(ipv4_cidr), IpFamily::kIpv4},
                           {kDefaultIpv6PoolName, "--pool_cidr6", std::string(ipv6_cidr), IpFamily::kIpv6}};
  std::vector<Pool> pools;
  for (const Wanted& w : wanted) {
    if (w.cidr.empty()) continue;
    auto pool = Pool::Parse(w.name, w.cidr);
    if (!pool.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(w.flag, "=", w.cidr, ": ", pool.status().message()));
    }
    if (pool->family() != w.family) {
      return absl::InvalidArgumentError(absl::StrCat(w.flag, "=", w.cidr, ": expected an ",
                                                     w.family == IpFamily::kIpv4 ? "IPv4" : "IPv6", " CIDR"));
    }
    pools.push_back(std::move(*pool));
  }
  if (pools.empty()) {
    return absl::InvalidArgumentError("no address pool configured: set --pool_cidr and/or --pool_cidr6");
  }
  return pools;
}

}  // namespace ebpfcni::ipam
