#pragma once
// Slots of policy_counters, the per-CPU array holding the packet and byte
// counters of policy rule entries. Every rule entry of every endpoint's
// policy map owns one slot (its value's counter_slot), so the programs count
// a hit with an inlined array access instead of a hash lookup.
//
// The allocator only knows which slots are held. Who holds them is in the
// policy maps themselves; at start the service reads those and claims what
// they reference (PolicyMap::AdoptCounterSlots).
//
// Freed slots are handed out again oldest first. A slot is freed once the
// map that referenced it can no longer be read by a program (after the
// swap's RCU grace period), and zeroed again when it is next handed out, so
// a count from a program still finishing a packet lands in a slot nobody
// reads yet rather than in a new rule's counters.
#include <cstdint>
#include <deque>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <absl/synchronization/mutex.h>

namespace ebpfcni::datapath {

class PolicyCounterSlots {
 public:
  // Slots 1 .. capacity-1 (slot 0 means "not counted").
  explicit PolicyCounterSlots(uint32_t capacity);

  // Marks `slot` as held by an installed entry. False when it is out of
  // range or already held: the caller gives that entry a slot of its own.
  bool Claim(uint32_t slot);
  // A free slot, or EBPFCNI_POLICY_COUNTER_NONE when all are held.
  uint32_t Allocate();
  // Gives `slot` back (ignored for 0, out of range or not held).
  void Release(uint32_t slot);

  uint32_t capacity() const { return capacity_; }
  // Slots that Allocate() can still hand out.
  uint32_t available() const;

 private:
  const uint32_t capacity_;
  mutable absl::Mutex mutex_;
  std::vector<bool> held_ ABSL_GUARDED_BY(mutex_);
  // Free slots in the order they are handed out. Built from held_ on the
  // first Allocate() after a Claim(), so claiming at start stays O(1).
  std::deque<uint32_t> free_ ABSL_GUARDED_BY(mutex_);
  bool free_stale_ ABSL_GUARDED_BY(mutex_) = true;
  uint32_t held_count_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace ebpfcni::datapath
