#pragma once
// The datapath's loaded BPF objects (programs and maps of endpoint.bpf.c,
// embedded as a libbpf skeleton) and typed access to their maps.
//
// With a pin directory, maps are pinned there by name and an existing pin is
// reused on the next load, so the ifindex->endpoint map and the counters
// survive a restart of the service; programs are pinned under <dir>/progs/
// so the next run knows which program ids an earlier run attached.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/policy_counter_slots.h"

struct endpoint_bpf;

namespace ebpfcni::datapath {

// Counters of one endpoint, summed over CPUs.
struct EndpointCounters {
  uint64_t from_pod_packets = 0;
  uint64_t from_pod_bytes = 0;
  uint64_t to_pod_packets = 0;
  uint64_t to_pod_bytes = 0;
  bool operator==(const EndpointCounters&) const = default;
};

// Conntrack lifetimes (bpf/lib/conntrack.h); tests shorten them.
struct ConntrackLifetimes {
  uint64_t tcp_established_ns = 6ull * 3600 * 1000000000;
  uint64_t tcp_syn_ns = 60ull * 1000000000;
  uint64_t tcp_closing_ns = 10ull * 1000000000;
  uint64_t other_ns = 60ull * 1000000000;
};

struct BpfLoadOptions {
  // Empty: nothing is pinned or reused (private maps, for tests).
  std::string pin_dir;
  ConntrackLifetimes conntrack;
  // Slots of the per-rule-entry counters array (policy_counters), 2 ..
  // EBPFCNI_POLICY_COUNTER_SLOTS_MAX; each costs 16 bytes per possible CPU.
  // Changing it recreates the array: counts restart from zero.
  uint32_t policy_counter_slots = EBPFCNI_POLICY_COUNTER_SLOTS_DEFAULT;
};

// What the endpoint map holds for one host-side interface.
struct EndpointMapEntry {
  uint32_t endpoint_id = 0;
  uint32_t identity = 0;  // 0 = not set (init: dropped)
};

// Packets and bytes of one counter, summed over CPUs.
struct PacketCount {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// Program ids, one per TC program.
struct ProgramIds {
  uint32_t from_container = 0;
  uint32_t to_container = 0;
};

class BpfObjects {
 public:
  // Opens and loads the embedded programs. pin_dir empty: nothing is pinned
  // or reused (private maps, for tests). Otherwise pin_dir must exist on
  // bpffs. A pinned map whose type, key/value size or capacity no longer
  // matches this build is dropped (with a warning) and recreated empty;
  // pins of maps this build no longer has are removed.
  static absl::StatusOr<std::unique_ptr<BpfObjects>> Load(const std::string& pin_dir);
  static absl::StatusOr<std::unique_ptr<BpfObjects>> Load(const BpfLoadOptions& options);
  ~BpfObjects();
  BpfObjects(const BpfObjects&) = delete;
  BpfObjects& operator=(const BpfObjects&) = delete;

  int from_container_fd() const;
  int to_container_fd() const;
  const ProgramIds& program_ids() const { return program_ids_; }
  // Ids of the programs that were pinned before this load (zeros if none):
  // what the previous run of the service had attached.
  const ProgramIds& previous_program_ids() const { return previous_program_ids_; }

  // identity 0 = not known yet: the programs drop the endpoint's traffic.
  absl::Status SetEndpointForIfindex(uint32_t ifindex, uint32_t endpoint_id,
                                     uint32_t identity = 0);
  absl::StatusOr<std::optional<uint32_t>> EndpointForIfindex(uint32_t ifindex) const;
  absl::StatusOr<std::optional<EndpointMapEntry>> EndpointEntry(uint32_t ifindex) const;
  // Deletes the ifindex entry only while it still maps to endpoint_id, so an
  // entry already taken over by another endpoint is left alone. When it
  // does, the interface's conntrack entries go too: they are keyed by
  // ifindex and would otherwise pass packets of the next veth the kernel
  // gives the index to.
  absl::Status RemoveIfindex(uint32_t ifindex, uint32_t endpoint_id);
  // All (ifindex, endpoint id) entries.
  absl::StatusOr<std::vector<std::pair<uint32_t, uint32_t>>> IfindexEntries() const;

  // Zeros when the endpoint has not seen a packet yet.
  absl::StatusOr<EndpointCounters> ReadCounters(uint32_t endpoint_id) const;
  // Zeroes the endpoint's slot (the counters map is an array by id).
  absl::Status DeleteCounters(uint32_t endpoint_id);
  // Ids whose counters are not all zero.
  absl::StatusOr<std::vector<uint32_t>> CountedEndpointIds() const;

  // Slots EBPFCNI_METRIC_* of the metrics map, summed over CPUs.
  absl::StatusOr<std::vector<PacketCount>> ReadMetrics() const;

  // Descriptors for tests and tools.
  int ifindex_map_fd() const;
  int endpoint_array_fd() const;  // the programs' copy of the ifindex map (low indexes)
  int counters_map_fd() const;
  int policy_maps_fd() const;
  int policy_counters_fd() const;
  // Who holds which slot of policy_counters (PolicyMap hands them out).
  PolicyCounterSlots& policy_counter_slots() const { return *policy_counter_slots_; }
  int ipcache_fd() const;        // the LPM trie (prefixes shorter than an address)
  int ipcache4_fd() const;       // whole IPv4 addresses, looked up first
  int ipcache_exact_fd() const;  // whole IPv6 addresses (and earlier versions' IPv4)
  int conntrack4_fd() const;
  int conntrack6_fd() const;
  int events_fd() const;
  int metrics_fd() const;

 private:
  explicit BpfObjects(endpoint_bpf* skeleton) : skeleton_(skeleton) {}
  absl::Status PinPrograms(const std::string& pin_dir);
  // Writes `info` (zeros: empty) to the endpoint array's slot for ifindex
  // when the array covers it; the ifindex map is the caller's business.
  absl::Status MirrorToEndpointArray(uint32_t ifindex, const ebpfcni_endpoint_info& info);
  // Makes the endpoint array exactly the ifindex map's low entries.
  absl::Status SyncEndpointArray();

  endpoint_bpf* skeleton_;
  std::unique_ptr<PolicyCounterSlots> policy_counter_slots_;
  ProgramIds program_ids_;
  ProgramIds previous_program_ids_;
};

}  // namespace ebpfcni::datapath
