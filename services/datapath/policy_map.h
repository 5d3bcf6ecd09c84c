#pragma once
// The per-endpoint policy maps: an outer BPF_MAP_TYPE_ARRAY_OF_MAPS indexed
// by endpoint id whose slots hold one inner hash map per endpoint (rules plus
// a configuration entry with the isolation flags).
//
// Replace() builds a complete new inner map aside, then swaps it into the
// slot with one map update: the programs see the old policy or the new one,
// never a mix. The old inner map is freed by the kernel once no program
// holds it any more.
//
// Each rule entry carries the slot of its counters in policy_counters (a
// per-CPU array; see policy_counter_slots.h). An entry whose key the
// endpoint's previous policy also had keeps that slot, so its counts carry
// on across a replace; a new key gets a zeroed slot; slots of keys the new
// policy drops are given back once the new map is in.
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/endpoint_policy.h"
#include "services/datapath/policy_counter_slots.h"

namespace ebpfcni::datapath {

class BpfObjects;

struct PolicyEntryCounters {
  PolicyRule rule;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

class PolicyMap {
 public:
  // Descriptors of the outer map and the per-entry counters array, and the
  // allocator of that array's slots; none owned.
  PolicyMap(int outer_fd, int counters_fd, PolicyCounterSlots* slots)
      : outer_fd_(outer_fd), counters_fd_(counters_fd), slots_(slots) {}
  explicit PolicyMap(const BpfObjects& bpf);

  // At start, before any other use: reads every endpoint's policy map and
  // claims the counter slots its entries hold. Entries without a usable
  // slot (written by a version that counted in the policy_stats hash, or
  // holding a slot beyond a smaller array) get a new one in place (one
  // atomic value update each), starting from their count in that hash
  // (`legacy_stats_fd`, -1 if there is none).
  absl::Status AdoptCounterSlots(int legacy_stats_fd);

  // How a policy may reach the kernel.
  enum class Write {
    // Build a new map aside and swap it in: the only safe way while
    // programs may look the endpoint up. A map-in-map update makes the
    // kernel wait for an RCU grace period (synchronize_rcu, milliseconds).
    kAtomicSwap,
    // The endpoint is invisible to the programs (not in endpoint_ifidx: a
    // new endpoint before attach, a deleted one after detach): write into
    // the map already in the slot when it is big enough, no grace period.
    kInPlaceWhileUnused,
  };

  // Validates and installs `policy`; the counters of entries the new
  // policy no longer has go.
  absl::Status Replace(uint32_t endpoint_id, const EndpointPolicy& policy,
                       Write write = Write::kAtomicSwap);
  // One endpoint's part of ReplaceMany(): its new policy, or nullopt for
  // none (not isolated).
  struct Update {
    uint32_t endpoint_id = 0;
    std::optional<EndpointPolicy> policy;
  };
  // Atomic swaps of many endpoints' policies for the price of one RCU grace
  // period: every new inner map is built and written aside first (a policy
  // removal gets an empty map, which means "no policy" to the programs),
  // then all outer slots are swapped with ONE bpf_map_update_batch (the
  // kernel waits for running programs once per batch, not per slot). Each
  // endpoint's swap stays atomic; endpoints see their own old or new policy,
  // never a mix. One status per update, in order: an invalid or too big
  // policy fails alone, the others are applied. When the kernel lacks
  // batch updates of the outer map, falls back to one update per slot
  // (logged once).
  std::vector<absl::Status> ReplaceMany(const std::vector<Update>& updates);
  // No policy (not isolated) and no counters. kInPlaceWhileUnused empties
  // a small map where it is and leaves it in the slot as a spare for the
  // id's next owner (an empty map, without configuration entry, means "no
  // policy" to the programs and to Read()).
  absl::Status Clear(uint32_t endpoint_id, Write write = Write::kAtomicSwap);
  // True when the slot holds a spare map that can take a policy of
  // `entries` entries in place.
  bool HasSpare(uint32_t endpoint_id, size_t entries = 1) const;
  // True when the slot holds any map.
  bool HasMap(uint32_t endpoint_id) const;
  // Puts an empty spare map into an empty slot of an id no endpoint has
  // (one RCU grace period, paid here instead of on a CNI ADD). Uses only
  // the descriptors: callers may run it without the owner's lock as long
  // as nothing else writes that slot meanwhile.
  absl::Status InstallSpare(uint32_t endpoint_id) const;
  // The installed policy, nullopt when the slot is empty or holds a spare. Port ranges come
  // back as the kernel decides them: adjacent blocks of one rule merged
  // into one range (where ranges of several rules overlap, the shared
  // blocks belong to the lowest rule id).
  absl::StatusOr<std::optional<EndpointPolicy>> Read(uint32_t endpoint_id) const;
  // Packets and bytes that hit the entries of `policy` (the endpoint's
  // installed one), summed over CPUs and entries: one lookup per entry, no
  // walk of the inner map (for the results of a big batch).
  absl::StatusOr<std::pair<uint64_t, uint64_t>> RuleHits(uint32_t endpoint_id,
                                                         const EndpointPolicy& policy) const;
  // Per-entry counters summed over CPUs, in the order of the installed rules
  // (a port range sums the counters of its blocks).
  absl::StatusOr<std::vector<PolicyEntryCounters>> ReadCounters(uint32_t endpoint_id) const;

 private:
  // The installed policy and, per rule, the counter slots of its map
  // entries (a range has one entry per block).
  struct Installed {
    EndpointPolicy policy;
    std::vector<std::vector<uint32_t>> slots;
  };
  absl::StatusOr<std::optional<Installed>> ReadInstalled(uint32_t endpoint_id) const;
  // Packets and bytes of one slot, summed over CPUs (zeros for slot 0).
  absl::StatusOr<std::pair<uint64_t, uint64_t>> SlotCount(uint32_t slot) const;

  int outer_fd_;
  int counters_fd_;
  PolicyCounterSlots* slots_;
};

}  // namespace ebpfcni::datapath
