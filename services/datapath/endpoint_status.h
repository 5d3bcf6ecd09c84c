#pragma once
// An endpoint as the datapath reports it: its record, whether its programs
// are attached, its policy in brief and its traffic counters.
#include <cstdint>

#include "services/datapath/bpf_objects.h"
#include "services/datapath/endpoint_registry.h"

namespace ebpfcni::datapath {

enum class AttachmentState {
  // The interface exists but our filters are not (both) attached: someone
  // removed them; the next CreateEndpoint or restart re-attaches.
  kDetached,
  kAttached,
  kInterfaceGone,
};

// An endpoint's installed policy in brief.
struct PolicySummary {
  bool installed = false;  // false: no policy, not isolated
  bool ingress_isolated = false;
  bool egress_isolated = false;
  bool verdict_events = false;
  uint32_t rule_count = 0;
  uint64_t rule_hit_packets = 0;
  uint64_t rule_hit_bytes = 0;
  bool operator==(const PolicySummary&) const = default;
};

struct EndpointStatus {
  EndpointRecord record;
  EndpointCounters counters;
  AttachmentState state = AttachmentState::kDetached;
  PolicySummary policy;
  bool operator==(const EndpointStatus&) const = default;
};

}  // namespace ebpfcni::datapath
