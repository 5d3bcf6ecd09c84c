#include "common/net/ip_address.h"

#include <arpa/inet.h>

#include <cstring>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

namespace ebpfcni {
namespace {
// Debian's abseil is built with its own string_view type, not std::string_view.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }
}  // namespace

absl::StatusOr<IpAddress> IpAddress::Parse(std::string_view text) {
  std::string s(text);
  uint8_t buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return FromV4Bytes(buf);
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) return FromV6Bytes(buf);
  return absl::InvalidArgumentError(absl::StrCat("\"", AV(text), "\" is not an IPv4 or IPv6 address"));
}

IpAddress IpAddress::FromV4Bytes(const uint8_t bytes[4]) {
  IpAddress a;
  a.family_ = IpFamily::kIpv4;
  std::memcpy(a.bytes_.data(), bytes, 4);
  return a;
}

IpAddress IpAddress::FromV6Bytes(const uint8_t bytes[16]) {
  IpAddress a;
  a.family_ = IpFamily::kIpv6;
  std::memcpy(a.bytes_.data(), bytes, 16);
  return a;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof(buf));
  return buf;
}

unsigned __int128 IpAddress::ToNumber() const {
  unsigned __int128 v = 0;
  for (int i = 0; i < size(); ++i) v = (v << 8) | bytes_[i];
  return v;
}

IpAddress IpAddress::FromNumber(IpFamily family, unsigned __int128 value) {
  IpAddress a;
  a.family_ = family;
  for (int i = a.size() - 1; i >= 0; --i) {
    a.bytes_[i] = static_cast<uint8_t>(value & 0xff);
    value >>= 8;
  }
  return a;
}

absl::StatusOr<IpPrefix> IpPrefix::Parse(std::string_view text, bool allow_bare_address) {
  auto slash = text.find('/');
  std::string_view addr_text = text.substr(0, slash);
  auto address = IpAddress::Parse(addr_text);
  if (!address.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", AV(text), "\" is not a CIDR prefix: ", address.status().message()));
  }
  int length = address->max_prefix_length();
  if (slash == std::string_view::npos) {
    if (!allow_bare_address) {
      return absl::InvalidArgumentError(absl::StrCat("\"", AV(text), "\" is not a CIDR prefix: missing \"/length\""));
    }
  } else if (!absl::SimpleAtoi(AV(text.substr(slash + 1)), &length) || length < 0 ||
             length > address->max_prefix_length()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", AV(text), "\" has an invalid prefix length (0..",
                                                   address->max_prefix_length(), ")"));
  }
  return IpPrefix(*address, length);
}

namespace {
unsigned __int128 HostMask(const IpAddress& a, int length) {
  int host_bits = a.max_prefix_length() - length;
  if (host_bits <= 0) return 0;
  if (host_bits >= 128) return ~static_cast<unsigned __int128>(0);
  return (static_cast<unsigned __int128>(1) << host_bits) - 1;
}
}  // namespace

IpAddress IpPrefix::Network() const {
  return IpAddress::FromNumber(family(), address_.ToNumber() & ~HostMask(address_, length_));
}

IpAddress IpPrefix::Last() const {
  return IpAddress::FromNumber(family(), address_.ToNumber() | HostMask(address_, length_));
}

bool IpPrefix::Contains(const IpAddress& address) const {
  if (address.family() != family()) return false;
  auto mask = ~HostMask(address_, length_);
  return (address.ToNumber() & mask) == (address_.ToNumber() & mask);
}

uint64_t IpPrefix::SizeSaturated() const {
  int host_bits = address_.max_prefix_length() - length_;
  if (host_bits >= 64) return UINT64_MAX;
  return uint64_t{1} << host_bits;
}

std::string IpPrefix::ToString() const {
  return absl::StrCat(address_.ToString(), "/", length_);
}

}  // namespace ebpfcni
