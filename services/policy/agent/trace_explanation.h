#pragma once
// The one sentence a TracePolicy answer carries, e.g.
//   "denied: demo/backend is isolated for ingress by demo/allow-frontend and
//    no rule allows demo/other (identity 301) on TCP/8080"
// Pure formatting of the two direction verdicts, kept apart from the agent
// so its wording is tested on its own.
#include <cstdint>
#include <string>

#include "ebpfcni/policy/v1/policy.pb.h"

namespace ebpfcni::policy {

struct TraceSide {
  std::string name;  // "ns/pod" or an IP address
  uint32_t identity = 0;
};

// "TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "any protocol", "protocol 47".
std::string ProtocolText(uint32_t protocol);
// "TCP/80", "UDP/53", "SCTP/9", "ICMP", "protocol 47".
std::string ProtocolPortText(uint32_t protocol, uint32_t port);

std::string ExplainTrace(const TraceSide& source, const TraceSide& destination, uint32_t protocol, uint32_t port,
                         const v1::DirectionVerdict& egress, const v1::DirectionVerdict& ingress);

}  // namespace ebpfcni::policy
