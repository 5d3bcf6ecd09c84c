#pragma once
// The per-endpoint policy maps: an outer BPF_MAP_TYPE_ARRAY_OF_MAPS indexed
// by endpoint id whose slots hold one inner hash map per endpoint (rules plus
// a configuration entry with the isolation flags).
//
// Replace() builds a complete new inner map aside, then swaps it into the
// slot with one map update: the programs see the old policy or the new one,
// never a mix. The old inner map is freed by the kernel once no program
// holds it any more.
#include <cstdint>
#include <optional>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/endpoint_policy.h"

namespace ebpfcni::datapath {

struct PolicyEntryCounters {
  PolicyRule rule;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

class PolicyMap {
 public:
  // Descriptors of the outer map and the per-entry counters map; not owned.
  PolicyMap(int outer_fd, int stats_fd) : outer_fd_(outer_fd), stats_fd_(stats_fd) {}

  // Validates, builds and swaps in `policy`; drops counters of entries the
  // new policy no longer has.
  absl::Status Replace(uint32_t endpoint_id, const EndpointPolicy& policy);
  // Empties the slot (no policy: not isolated) and drops its counters.
  absl::Status Clear(uint32_t endpoint_id);
  // The installed policy, nullopt when the slot is empty. Port ranges come
  // back as the kernel decides them: adjacent blocks of one rule merged
  // into one range (where ranges of several rules overlap, the shared
  // blocks belong to the lowest rule id).
  absl::StatusOr<std::optional<EndpointPolicy>> Read(uint32_t endpoint_id) const;
  // Per-entry counters summed over CPUs, in the order of the installed rules
  // (a port range sums the counters of its blocks).
  absl::StatusOr<std::vector<PolicyEntryCounters>> ReadCounters(uint32_t endpoint_id) const;

 private:
  // The installed policy and, per rule, its map keys (a range has several).
  struct Installed {
    EndpointPolicy policy;
    std::vector<std::vector<ebpfcni_policy_key>> keys;
  };
  absl::StatusOr<std::optional<Installed>> ReadInstalled(uint32_t endpoint_id) const;

  absl::Status DeleteCountersExcept(uint32_t endpoint_id, const EndpointPolicy* keep);

  int outer_fd_;
  int stats_fd_;
};

}  // namespace ebpfcni::datapath
