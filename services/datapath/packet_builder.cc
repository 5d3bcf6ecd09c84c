#include "services/datapath/packet_builder.h"

#include <algorithm>

namespace ebpfcni::datapath {
namespace {

constexpr uint8_t kDestinationMac[6] = {0x02, 0xeb, 0xcf, 0x00, 0x00, 0x01};
constexpr uint8_t kSourceMac[6] = {0x02, 0xeb, 0xcf, 0x00, 0x00, 0x02};

void Put16(std::vector<uint8_t>& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

void Put32(std::vector<uint8_t>& out, uint32_t value) {
  Put16(out, static_cast<uint16_t>(value >> 16));
  Put16(out, static_cast<uint16_t>(value));
}

void PutEthernet(std::vector<uint8_t>& out, uint16_t ethertype) {
  out.insert(out.end(), kDestinationMac, kDestinationMac + 6);
  out.insert(out.end(), kSourceMac, kSourceMac + 6);
  Put16(out, ethertype);
}

uint16_t Checksum(const uint8_t* data, size_t length) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < length; i += 2) sum += (data[i] << 8) | data[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

PacketBuilder PacketBuilder::WithPorts(const IpAddress& source, const IpAddress& destination,
                                       uint8_t protocol, uint16_t source_port,
                                       uint16_t destination_port) {
  PacketBuilder builder(source, destination, protocol);
  builder.source_port_ = source_port;
  builder.destination_port_ = destination_port;
  return builder;
}

PacketBuilder PacketBuilder::Tcp(const IpAddress& source, const IpAddress& destination,
                                 uint16_t source_port, uint16_t destination_port,
                                 uint8_t flags) {
  PacketBuilder builder = WithPorts(source, destination, kProtoTcp, source_port, destination_port);
  builder.tcp_flags_ = flags;
  return builder;
}

PacketBuilder PacketBuilder::Udp(const IpAddress& source, const IpAddress& destination,
                                 uint16_t source_port, uint16_t destination_port) {
  return WithPorts(source, destination, kProtoUdp, source_port, destination_port);
}

PacketBuilder PacketBuilder::Sctp(const IpAddress& source, const IpAddress& destination,
                                  uint16_t source_port, uint16_t destination_port) {
  return WithPorts(source, destination, kProtoSctp, source_port, destination_port);
}

PacketBuilder PacketBuilder::Icmp(const IpAddress& source, const IpAddress& destination,
                                  uint8_t type, uint16_t id) {
  PacketBuilder builder(source, destination, source.is_v4() ? kProtoIcmp : kProtoIcmpV6);
  builder.icmp_type_ = type;
  builder.icmp_id_ = id;
  return builder;
}

PacketBuilder PacketBuilder::Protocol(const IpAddress& source, const IpAddress& destination,
                                      uint8_t protocol) {
  return PacketBuilder(source, destination, protocol);
}

PacketBuilder& PacketBuilder::Payload(size_t bytes) {
  payload_ = bytes;
  return *this;
}

PacketBuilder& PacketBuilder::Ipv4Options(size_t bytes) {
  ipv4_options_ = bytes;
  return *this;
}

PacketBuilder& PacketBuilder::Ipv6Extension(uint8_t type) {
  ipv6_extensions_.push_back(type);
  return *this;
}

PacketBuilder& PacketBuilder::Fragment(uint16_t offset_units, bool more_fragments, uint32_t id) {
  fragment_ = true;
  fragment_id_ = id;
  fragment_offset_ = offset_units;
  more_fragments_ = more_fragments;
  return *this;
}

PacketBuilder& PacketBuilder::Quote(const std::vector<uint8_t>& frame,
                                    size_t bytes_after_ip_header) {
  constexpr size_t kEthernet = 14;
  if (frame.size() <= kEthernet) return *this;
  size_t ip_header = (frame[kEthernet] >> 4) == 4 ? (frame[kEthernet] & 0x0f) * 4 : 40;
  size_t length = std::min(frame.size() - kEthernet, ip_header + bytes_after_ip_header);
  quoted_.assign(frame.begin() + kEthernet, frame.begin() + kEthernet + length);
  return *this;
}

std::vector<uint8_t> PacketBuilder::Build() const {
  // L4 header (absent in later fragments) followed by the payload.
  std::vector<uint8_t> l4;
  if (!(fragment_ && fragment_offset_ != 0)) {
    switch (protocol_) {
      case kProtoTcp:
        Put16(l4, source_port_);
        Put16(l4, destination_port_);
        Put32(l4, 1);     // sequence
        Put32(l4, 0);     // acknowledgement
        l4.push_back(5 << 4);  // data offset: 20 bytes
        l4.push_back(tcp_flags_);
        Put16(l4, 65535);  // window
        Put16(l4, 0);      // checksum (not verified by the programs)
        Put16(l4, 0);      // urgent pointer
        break;
      case kProtoUdp:
        Put16(l4, source_port_);
        Put16(l4, destination_port_);
        Put16(l4, static_cast<uint16_t>(8 + payload_));
        Put16(l4, 0);
        break;
      case kProtoSctp:
        Put16(l4, source_port_);
        Put16(l4, destination_port_);
        Put32(l4, 0);  // verification tag
        Put32(l4, 0);  // checksum
        break;
      case kProtoIcmp:
      case kProtoIcmpV6:
        l4.push_back(icmp_type_);
        l4.push_back(0);  // code
        Put16(l4, 0);     // checksum
        Put16(l4, icmp_id_);
        Put16(l4, 1);  // sequence (errors: unused / MTU)
        l4.insert(l4.end(), quoted_.begin(), quoted_.end());
        break;
      default:
        break;
    }
  }
  l4.resize(l4.size() + payload_, 0);

  std::vector<uint8_t> frame;
  if (source_.is_v4()) {
    PutEthernet(frame, 0x0800);
    size_t header_length = 20 + ipv4_options_;
    size_t start = frame.size();
    frame.push_back(static_cast<uint8_t>(0x40 | (header_length / 4)));
    frame.push_back(0);
    Put16(frame, static_cast<uint16_t>(header_length + l4.size()));
    Put16(frame, static_cast<uint16_t>(fragment_id_));  // identification
    uint16_t fragment = 0;
    if (fragment_) fragment = static_cast<uint16_t>((fragment_offset_ & 0x1fff) |
                                                    (more_fragments_ ? 0x2000 : 0));
    Put16(frame, fragment);
    frame.push_back(64);  // TTL
    frame.push_back(protocol_);
    Put16(frame, 0);  // checksum, filled below
    frame.insert(frame.end(), source_.data(), source_.data() + 4);
    frame.insert(frame.end(), destination_.data(), destination_.data() + 4);
    frame.resize(frame.size() + ipv4_options_, 1);  // NOP options
    uint16_t checksum = Checksum(frame.data() + start, header_length);
    frame[start + 10] = static_cast<uint8_t>(checksum >> 8);
    frame[start + 11] = static_cast<uint8_t>(checksum);
  } else {
    PutEthernet(frame, 0x86DD);
    // Extension headers in order, each naming the next.
    std::vector<uint8_t> chain = ipv6_extensions_;
    if (fragment_) chain.push_back(kIpv6Fragment);
    std::vector<uint8_t> extensions;
    for (size_t i = 0; i < chain.size(); ++i) {
      uint8_t next = i + 1 < chain.size() ? chain[i + 1] : protocol_;
      if (chain[i] == kIpv6Fragment) {
        extensions.push_back(next);
        extensions.push_back(0);
        Put16(extensions, static_cast<uint16_t>((fragment_offset_ << 3) | (more_fragments_ ? 1 : 0)));
        Put32(extensions, fragment_id_);
      } else if (chain[i] == kIpv6Auth) {
        extensions.push_back(next);
        extensions.push_back(2);  // (2 + 2) * 4 = 16 bytes
        extensions.resize(extensions.size() + 14, 0);
      } else {
        extensions.push_back(next);
        extensions.push_back(0);  // (0 + 1) * 8 = 8 bytes
        extensions.resize(extensions.size() + 6, 0);
      }
    }
    Put32(frame, 0x60000000);
    Put16(frame, static_cast<uint16_t>(extensions.size() + l4.size()));
    frame.push_back(chain.empty() ? protocol_ : chain[0]);
    frame.push_back(64);  // hop limit
    frame.insert(frame.end(), source_.data(), source_.data() + 16);
    frame.insert(frame.end(), destination_.data(), destination_.data() + 16);
    frame.insert(frame.end(), extensions.begin(), extensions.end());
  }
  frame.insert(frame.end(), l4.begin(), l4.end());
  return frame;
}

std::vector<uint8_t> BuildArpFrame() {
  std::vector<uint8_t> frame;
  PutEthernet(frame, 0x0806);
  Put16(frame, 1);       // hardware: Ethernet
  Put16(frame, 0x0800);  // protocol: IPv4
  frame.push_back(6);
  frame.push_back(4);
  Put16(frame, 1);  // request
  frame.insert(frame.end(), kSourceMac, kSourceMac + 6);
  Put32(frame, 0x0afb0002);
  frame.resize(frame.size() + 6, 0);
  Put32(frame, 0x0afb0001);
  return frame;
}

}  // namespace ebpfcni::datapath
