#pragma once
// IPv4/IPv6 addresses and prefixes as values, parsed and printed through
// inet_pton/inet_ntop. Used by IPAM (pool arithmetic), the CNI binary
// (results, routes) and the datapath (endpoint addresses).
#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include <absl/status/statusor.h>

namespace ebpfcni {

enum class IpFamily { kIpv4, kIpv6 };

class IpAddress {
 public:
  IpAddress() = default;
  static absl::StatusOr<IpAddress> Parse(std::string_view text);
  static IpAddress FromV4Bytes(const uint8_t bytes[4]);
  static IpAddress FromV6Bytes(const uint8_t bytes[16]);

  IpFamily family() const { return family_; }
  bool is_v4() const { return family_ == IpFamily::kIpv4; }
  // Number of significant bytes: 4 or 16.
  int size() const { return is_v4() ? 4 : 16; }
  int max_prefix_length() const { return size() * 8; }
  const uint8_t* data() const { return bytes_.data(); }
  std::string ToString() const;

  // The address as a 128-bit unsigned number (IPv4 in the low 32 bits).
  unsigned __int128 ToNumber() const;
  static IpAddress FromNumber(IpFamily family, unsigned __int128 value);

  auto operator<=>(const IpAddress&) const = default;

 private:
  IpFamily family_ = IpFamily::kIpv4;
  std::array<uint8_t, 16> bytes_{};
};

class IpPrefix {
 public:
  IpPrefix() = default;
  // "10.0.0.0/24", "fd00::/64". A host address without "/len" is rejected
  // unless allow_bare_address is true (then it is a /32 or /128).
  static absl::StatusOr<IpPrefix> Parse(std::string_view text,
                                        bool allow_bare_address = false);
  IpPrefix(IpAddress address, int length) : address_(address), length_(length) {}

  const IpAddress& address() const { return address_; }
  int length() const { return length_; }
  IpFamily family() const { return address_.family(); }
  // The prefix with host bits cleared.
  IpAddress Network() const;
  // Last address of the prefix (the IPv4 broadcast address).
  IpAddress Last() const;
  bool Contains(const IpAddress& address) const;
  // Number of addresses in the prefix, saturated at 2^64-1.
  uint64_t SizeSaturated() const;
  std::string ToString() const;

  auto operator<=>(const IpPrefix&) const = default;

 private:
  IpAddress address_;
  int length_ = 0;
};

}  // namespace ebpfcni
