#pragma once
// Builds Ethernet frames for BPF_PROG_TEST_RUN: the BPF unit tests, the
// Trace RPC and the benchmarks all feed the real programs with these.
// Covers what the programs parse: IPv4 (with options, fragments), IPv6
// (with extension headers, fragment header), TCP/UDP/SCTP/ICMP/ICMPv6, ARP.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/net/ip_address.h"

namespace ebpfcni::datapath {

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoIcmpV6 = 58;
inline constexpr uint8_t kProtoSctp = 132;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpAck = 0x10;

// IPv6 extension header numbers.
inline constexpr uint8_t kIpv6HopByHop = 0;
inline constexpr uint8_t kIpv6Routing = 43;
inline constexpr uint8_t kIpv6Fragment = 44;
inline constexpr uint8_t kIpv6Auth = 51;
inline constexpr uint8_t kIpv6DestOptions = 60;

class PacketBuilder {
 public:
  // TCP/UDP/SCTP with ports; `flags` only for TCP.
  static PacketBuilder Tcp(const IpAddress& source, const IpAddress& destination,
                           uint16_t source_port, uint16_t destination_port,
                           uint8_t flags = kTcpSyn);
  static PacketBuilder Udp(const IpAddress& source, const IpAddress& destination,
                           uint16_t source_port, uint16_t destination_port);
  static PacketBuilder Sctp(const IpAddress& source, const IpAddress& destination,
                            uint16_t source_port, uint16_t destination_port);
  // ICMP for IPv4 sources, ICMPv6 for IPv6 ones; `id` fills the echo
  // identifier field.
  static PacketBuilder Icmp(const IpAddress& source, const IpAddress& destination, uint8_t type,
                            uint16_t id = 0);
  // Any protocol: the L4 header is `payload` bytes of zeros.
  static PacketBuilder Protocol(const IpAddress& source, const IpAddress& destination,
                                uint8_t protocol);

  PacketBuilder& Payload(size_t bytes);
  // IPv4 options of `bytes` (a multiple of 4, up to 40), NOP-filled.
  PacketBuilder& Ipv4Options(size_t bytes);
  // Appends an IPv6 extension header (8 bytes; AH 16) before the L4 header.
  PacketBuilder& Ipv6Extension(uint8_t type);
  // Makes the packet a fragment of datagram `id` (IPv4 uses the low 16
  // bits): offset in 8-byte units; a non-zero offset leaves the L4 header
  // out (it is in the first fragment).
  PacketBuilder& Fragment(uint16_t offset_units, bool more_fragments, uint32_t id = 0x1234);
  // ICMP errors: quote `frame`'s IP packet (without its Ethernet header),
  // cut to its IP header plus `bytes_after_ip_header` (RFC 792 quotes 8).
  PacketBuilder& Quote(const std::vector<uint8_t>& frame, size_t bytes_after_ip_header = 8);

  std::vector<uint8_t> Build() const;

 private:
  PacketBuilder(const IpAddress& source, const IpAddress& destination, uint8_t protocol)
      : source_(source), destination_(destination), protocol_(protocol) {}
  static PacketBuilder WithPorts(const IpAddress& source, const IpAddress& destination,
                                 uint8_t protocol, uint16_t source_port,
                                 uint16_t destination_port);

  IpAddress source_;
  IpAddress destination_;
  uint8_t protocol_;
  uint16_t source_port_ = 0;
  uint16_t destination_port_ = 0;
  uint8_t tcp_flags_ = 0;
  uint8_t icmp_type_ = 0;
  uint16_t icmp_id_ = 0;
  size_t payload_ = 0;
  size_t ipv4_options_ = 0;
  std::vector<uint8_t> ipv6_extensions_;
  bool fragment_ = false;
  uint16_t fragment_offset_ = 0;
  bool more_fragments_ = false;
  uint32_t fragment_id_ = 0x1234;
  std::vector<uint8_t> quoted_;
};

// An ARP request frame.
std::vector<uint8_t> BuildArpFrame();

}  // namespace ebpfcni::datapath
