#pragma once
// An address pool: pure address arithmetic over one CIDR, no state.
//
// The usable addresses of a pool are numbered 0..Capacity()-1 ("indexes").
// Index 0 is network+2: the network address itself is never handed out (for
// IPv6 it is the subnet-router anycast address) and network+1 is the pods'
// gateway. For IPv4 the broadcast address (the prefix's last address) is
// excluded as well. Working with indexes instead of enumerating addresses
// keeps huge IPv6 pools (a /64 has 2^64 addresses) cheap.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <absl/status/statusor.h>

#include "common/net/ip_address.h"

namespace ebpfcni::ipam {

class Pool {
 public:
  // Capacity is reported (and indexes are stored by SQLite) as signed
  // 64-bit-safe numbers, so huge IPv6 pools are capped here.
  static constexpr uint64_t kMaxCapacity = uint64_t{1} << 63;

  // Fails when the CIDR leaves no usable address after the reserved ones
  // (IPv4 /31 and /32, IPv6 /127 and /128). Host bits in the CIDR are
  // cleared ("10.244.0.7/24" means 10.244.0.0/24).
  static absl::StatusOr<Pool> Create(std::string name, const IpPrefix& cidr);
  // Parses the CIDR text first; errors mention the text as given.
  static absl::StatusOr<Pool> Parse(std::string name, std::string_view cidr);

  const std::string& name() const { return name_; }
  // Network address and prefix length (host bits cleared).
  const IpPrefix& cidr() const { return cidr_; }
  IpFamily family() const { return cidr_.family(); }
  IpAddress gateway() const;
  uint64_t Capacity() const { return capacity_; }

  // The usable address with this index; index must be < Capacity().
  IpAddress AddressAt(uint64_t index) const;
  // The index of a usable address, or nullopt when the address is outside
  // the pool or reserved (network, gateway, IPv4 broadcast).
  std::optional<uint64_t> IndexOf(const IpAddress& address) const;
  // True for addresses inside the CIDR that are never handed out.
  bool IsReserved(const IpAddress& address) const;

 private:
  Pool(std::string name, IpPrefix cidr, uint64_t capacity)
      : name_(std::move(name)), cidr_(cidr), capacity_(capacity) {}

  // Usable addresses start right after the gateway.
  static constexpr unsigned kFirstUsableOffset = 2;

  std::string name_;
  IpPrefix cidr_;
  uint64_t capacity_;
};

inline constexpr char kDefaultIpv4PoolName[] = "default-ipv4";
inline constexpr char kDefaultIpv6PoolName[] = "default-ipv6";

// The pools the service runs with, from --pool_cidr / --pool_cidr6: an empty
// CIDR means that family is not served, but at least one must be given, and
// each must be of its flag's family.
absl::StatusOr<std::vector<Pool>> ConfigurePools(std::string_view ipv4_cidr, std::string_view ipv6_cidr);

}  // namespace ebpfcni::ipam
