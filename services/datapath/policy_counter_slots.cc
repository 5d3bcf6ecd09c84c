#include "services/datapath/policy_counter_slots.h"

#include "ebpfcni/datapath_abi.h"

namespace ebpfcni::datapath {

PolicyCounterSlots::PolicyCounterSlots(uint32_t capacity)
    : capacity_(capacity), held_(capacity, false) {}

bool PolicyCounterSlots::Claim(uint32_t slot) {
  absl::MutexLock lock(&mutex_);
  if (slot == EBPFCNI_POLICY_COUNTER_NONE || slot >= capacity_ || held_[slot]) return false;
  held_[slot] = true;
  ++held_count_;
  free_stale_ = true;
  return true;
}

uint32_t PolicyCounterSlots::Allocate() {
  absl::MutexLock lock(&mutex_);
  if (free_stale_) {
    free_.clear();
    for (uint32_t slot = 1; slot < capacity_; ++slot) {
      if (!held_[slot]) free_.push_back(slot);
    }
    free_stale_ = false;
  }
  if (free_.empty()) return EBPFCNI_POLICY_COUNTER_NONE;
  uint32_t slot = free_.front();
  free_.pop_front();
  held_[slot] = true;
  ++held_count_;
  return slot;
}

void PolicyCounterSlots::Release(uint32_t slot) {
  absl::MutexLock lock(&mutex_);
  if (slot == EBPFCNI_POLICY_COUNTER_NONE || slot >= capacity_ || !held_[slot]) return;
  held_[slot] = false;
  --held_count_;
  if (!free_stale_) free_.push_back(slot);
}

uint32_t PolicyCounterSlots::available() const {
  absl::MutexLock lock(&mutex_);
  return capacity_ - 1 - held_count_;
}

}  // namespace ebpfcni::datapath
