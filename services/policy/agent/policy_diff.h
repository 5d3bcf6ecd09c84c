#pragma once
// Differences between an endpoint's compiled policy and the policy the
// kernel holds (datapath DumpPolicy), for VerifyDatapath. Each difference
// is a line a person can act on, e.g.
//   "missing allow ingress id=301 TCP/80 (rule 17)"
//   "unexpected allow egress id=any any protocol (rule 20)"
//   "ingress isolation: kernel off, compiled on"
#include <string>
#include <vector>

#include "ebpfcni/datapath/v1/datapath.pb.h"

namespace ebpfcni::policy {

// "allow ingress id=301 TCP/80-90 (rule 17)".
std::string PolicyRuleText(const datapath::v1::PolicyRule& rule);

std::vector<std::string> DiffEndpointPolicy(const datapath::v1::EndpointPolicy& compiled,
                                            const datapath::v1::DumpPolicyResponse& kernel);

}  // namespace ebpfcni::policy
