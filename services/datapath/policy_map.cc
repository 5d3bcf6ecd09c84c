#include "services/datapath/policy_map.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <memory>
#include <utility>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_map_util.h"
#include "services/datapath/bpf_objects.h"

namespace ebpfcni::datapath {
namespace {

ebpfcni_policy_key ConfigKey() {
  ebpfcni_policy_key key{};
  key.direction = EBPFCNI_POLICY_CONFIG;
  return key;
}

// The configuration entry of a direction's port-range block lengths.
ebpfcni_policy_key RangeConfigKey(PolicyDirection direction) {
  ebpfcni_policy_key key{};
  key.direction = EBPFCNI_POLICY_CONFIG;
  key.dport = htons(static_cast<uint16_t>(direction));
  return key;
}

// The 8-byte key as one number, for sets of keys.
uint64_t PackedKey(const ebpfcni_policy_key& key) {
  static_assert(sizeof(ebpfcni_policy_key) == sizeof(uint64_t));
  uint64_t packed;
  std::memcpy(&packed, &key, sizeof(packed));
  return packed;
}

// The rule's key shape (EBPFCNI_POLICY_F_SHAPE level).
uint32_t ShapeLevel(const PolicyRule& rule) {
  bool peer = rule.peer_identity != 0;
  if (rule.is_range()) {
    return peer ? EBPFCNI_POLICY_SHAPE_PEER_RANGE : EBPFCNI_POLICY_SHAPE_ANY_RANGE;
  }
  if (rule.protocol == 0) return peer ? 2 : 5;
  if (rule.port == 0) return peer ? 1 : 4;
  return peer ? 0 : 3;
}

// The map keys of one rule: one, or one per port block of a range.
std::vector<ebpfcni_policy_key> KeysOf(const PolicyRule& rule) {
  ebpfcni_policy_key key{};
  key.peer_identity = rule.peer_identity;
  key.protocol = rule.protocol;
  if (!rule.is_range()) {
    key.direction = static_cast<uint8_t>(rule.direction);
    key.dport = htons(rule.port);
    return {key};
  }
  std::vector<ebpfcni_policy_key> keys;
  for (const PortBlock& block : SplitPortRange(rule.port, rule.end_port)) {
    key.direction = static_cast<uint8_t>(
        EBPFCNI_POLICY_RANGE_DIRECTION(static_cast<uint32_t>(rule.direction),
                                       block.prefix_length));
    key.dport = htons(block.first);
    keys.push_back(key);
  }
  return keys;
}

struct MapEntry {
  ebpfcni_policy_key key;
  ebpfcni_policy_value value;
};

// Every entry the kernel needs for `policy`: the configuration entries,
// each exact rule, each block of each range. Blocks that several ranges
// share (validation guarantees they agree on the action) carry the lowest
// rule id.
std::vector<MapEntry> EntriesOf(const EndpointPolicy& policy) {
  ebpfcni_policy_value config{};
  config.rule_id_or_flags = (policy.ingress_isolated ? EBPFCNI_POLICY_F_ISOLATED_INGRESS : 0) |
                            (policy.egress_isolated ? EBPFCNI_POLICY_F_ISOLATED_EGRESS : 0) |
                            (policy.verdict_events ? EBPFCNI_POLICY_F_VERDICT_EVENTS : 0);
  std::map<PolicyDirection, uint32_t> range_lengths;
  std::vector<MapEntry> entries;
  entries.reserve(policy.rules.size() + 3);
  entries.push_back({ConfigKey(), {}});
  std::map<uint64_t, size_t> index;  // packed key -> position in `entries`
  for (const PolicyRule& rule : policy.rules) {
    config.rule_id_or_flags |= EBPFCNI_POLICY_F_SHAPE(static_cast<uint32_t>(rule.direction),
                                                      ShapeLevel(rule));
    for (const ebpfcni_policy_key& key : KeysOf(rule)) {
      if (rule.is_range()) {
        range_lengths[rule.direction] |= 1u << EBPFCNI_POLICY_RANGE_PLEN_OF(key.direction);
      }
      ebpfcni_policy_value value{};
      value.action = static_cast<uint8_t>(rule.action);
      value.rule_id_or_flags = rule.rule_id;
      auto [it, inserted] = index.try_emplace(PackedKey(key), entries.size());
      if (inserted) {
        entries.push_back({key, value});
      } else if (rule.rule_id < entries[it->second].value.rule_id_or_flags) {
        entries[it->second].value.rule_id_or_flags = rule.rule_id;
      }
    }
  }
  entries[0].value = config;
  for (const auto& [direction, lengths] : range_lengths) {
    ebpfcni_policy_value value{};
    value.rule_id_or_flags = lengths;
    entries.push_back({RangeConfigKey(direction), value});
  }
  return entries;
}

// The entries of a valid policy that fits an inner map: INVALID_ARGUMENT
// or RESOURCE_EXHAUSTED otherwise.
absl::StatusOr<std::vector<MapEntry>> CheckedEntriesOf(const EndpointPolicy& policy) {
  if (absl::Status status = ValidatePolicy(policy); !status.ok()) return status;
  std::vector<MapEntry> entries = EntriesOf(policy);
  if (entries.size() > EBPFCNI_POLICY_MAX_ENTRIES) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the policy needs ", entries.size(), " map entries (", policy.rules.size(),
        " rules; each port range takes one entry per aligned block of ports, up to 30), more "
        "than the ", EBPFCNI_POLICY_MAX_ENTRIES, " an endpoint's policy map holds"));
  }
  return entries;
}

// Kernels without BPF_MAP_UPDATE_BATCH for array-of-maps answer with one of
// these (ENOTSUPP is the kernel-internal 524 the syscall leaks).
bool BatchUnsupported(int err) { return err == EOPNOTSUPP || err == 524 || err == EINVAL; }

// Opens the inner map currently in the slot; -1 with errno ENOENT if none.
int OpenInner(int outer_fd, uint32_t endpoint_id) {
  uint32_t inner_id = 0;
  if (bpf_map_lookup_elem(outer_fd, &endpoint_id, &inner_id) != 0) return -1;
  return bpf_map_get_fd_by_id(inner_id);
}

// Inner maps hold a power of two entries, at least 64: the kernel rounds the
// bucket array up to a power of two anyway, so this costs no memory and
// lets a freed map take the next owner's policy in place.
uint32_t InnerCapacity(size_t entries) {
  uint32_t capacity = 64;
  while (capacity < entries && capacity < EBPFCNI_POLICY_MAX_ENTRIES) capacity *= 2;
  return capacity;
}

// A new inner map holding exactly `entries`, not yet in any slot; the
// caller owns the returned descriptor.
absl::StatusOr<int> BuildInnerMap(const std::vector<MapEntry>& entries, uint32_t endpoint_id) {
  // Sized to the policy: hash inner maps need not match the template's
  // max_entries, and a map sized for the worst case would allocate its
  // whole bucket array per endpoint.
  LIBBPF_OPTS(bpf_map_create_opts, options, .map_flags = BPF_F_NO_PREALLOC);
  int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "ebpfcni_policy", sizeof(ebpfcni_policy_key),
                          sizeof(ebpfcni_policy_value), InnerCapacity(entries.size()), &options);
  if (fd < 0) {
    return BpfErrno(absl::StrCat("creating a policy map of ", entries.size(),
                                 " entries for endpoint ", endpoint_id),
                    errno);
  }
  // One syscall for all entries when the kernel batches hash updates; the
  // map is not in any slot yet, so the order does not matter.
  std::vector<ebpfcni_policy_key> keys;
  std::vector<ebpfcni_policy_value> values;
  keys.reserve(entries.size());
  values.reserve(entries.size());
  for (const MapEntry& entry : entries) {
    keys.push_back(entry.key);
    values.push_back(entry.value);
  }
  uint32_t written = static_cast<uint32_t>(entries.size());
  LIBBPF_OPTS(bpf_map_batch_opts, batch_options, .elem_flags = BPF_NOEXIST);
  if (entries.empty() ||
      bpf_map_update_batch(fd, keys.data(), values.data(), &written, &batch_options) == 0) {
    return fd;
  }
  // Unsupported or stopped at an entry: the rest one by one (an entry
  // written twice fails with EEXIST, so restart after what was written).
  // (A kernel without the command leaves the count as it was: all of them.)
  size_t first = written < entries.size() ? written : 0;
  for (size_t i = first; i < entries.size(); ++i) {
    const MapEntry& entry = entries[i];
    if (bpf_map_update_elem(fd, &entry.key, &entry.value, BPF_NOEXIST) != 0) {
      int err = errno;
      close(fd);
      return BpfErrno(absl::StrCat("writing policy entry ", entry.key.peer_identity, "/",
                                   int{entry.key.direction}, "/", int{entry.key.protocol}, "/",
                                   ntohs(entry.key.dport), " of endpoint ", endpoint_id),
                      err);
    }
  }
  return fd;
}

// Maps up to this size are kept as spares when their endpoint goes away;
// bigger ones are freed (their memory is worth more than a grace period).
constexpr uint32_t kSpareMaxEntries = 4096;

uint32_t MaxEntriesOf(int map_fd) {
  bpf_map_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(map_fd, &info, &length) != 0) return 0;
  return info.max_entries;
}

// Deletes every key of a map, a batch per syscall.
absl::Status EmptyMap(int map_fd, uint32_t max_entries) {
  std::vector<ebpfcni_policy_key> keys(1024);
  std::vector<ebpfcni_policy_value> values(1024);
  // The configuration entry first: from then on the map means "no policy".
  ebpfcni_policy_key config = ConfigKey();
  if (bpf_map_delete_elem(map_fd, &config) != 0 && errno != ENOENT) {
    return BpfErrno("emptying a policy map", errno);
  }
  uint64_t in_batch = 0, out_batch = 0;
  for (uint32_t round = 0; round <= 1 + max_entries / 1024; ++round) {
    uint32_t count = static_cast<uint32_t>(keys.size());
    int rc = bpf_map_lookup_and_delete_batch(map_fd, round == 0 ? nullptr : &in_batch,
                                             &out_batch, keys.data(), values.data(), &count,
                                             nullptr);
    if (rc != 0) {
      if (errno == ENOENT) return absl::OkStatus();  // done
      return BpfErrno("emptying a policy map", errno);
    }
    in_batch = out_batch;
  }
  return absl::OkStatus();
}

// A per-CPU map's value is one element per possible CPU.
absl::StatusOr<size_t> PossibleCpus() {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return BpfErrno("counting possible CPUs", -cpus);
  return static_cast<size_t>(cpus);
}

// Configuration entries are not rules: no counters.
bool IsRuleKey(const ebpfcni_policy_key& key) { return key.direction != EBPFCNI_POLICY_CONFIG; }

// Packed key -> counter slot of every rule entry of a policy map that holds
// a slot.
absl::StatusOr<std::unordered_map<uint64_t, uint32_t>> SlotsOf(int map_fd) {
  std::unordered_map<uint64_t, uint32_t> slots;
  absl::Status status = ForEachMapKey<ebpfcni_policy_key>(
      map_fd, EBPFCNI_POLICY_MAX_ENTRIES, "a policy map",
      [&](const ebpfcni_policy_key& key) -> absl::Status {
        ebpfcni_policy_value value{};
        if (!IsRuleKey(key) || bpf_map_lookup_elem(map_fd, &key, &value) != 0) {
          return absl::OkStatus();
        }
        if (value.counter_slot != EBPFCNI_POLICY_COUNTER_NONE) {
          slots[PackedKey(key)] = value.counter_slot;
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return slots;
}

// Sets a slot's per-CPU counters (`per_cpu` has one element per possible CPU).
absl::Status WriteSlot(int counters_fd, uint32_t slot,
                       const std::vector<ebpfcni_packet_counter>& per_cpu) {
  if (bpf_map_update_elem(counters_fd, &slot, per_cpu.data(), BPF_ANY) != 0) {
    return BpfErrno(absl::StrCat("writing policy counter slot ", slot), errno);
  }
  return absl::OkStatus();
}

// What installing one policy does to counter slots.
struct SlotChange {
  // Handed out for this install: given back if it fails.
  std::vector<uint32_t> fresh;
  // Held by entries of the previous map that the new one lacks: given back
  // once the new map is in (no program can read the old one then).
  std::vector<uint32_t> dropped;
};

// Gives every rule entry of `entries` a counter slot: the one its key holds
// in the endpoint's current map (`current_fd`, -1 for none), so its counts
// carry on, otherwise a freshly zeroed one. With every slot held, an entry
// is enforced but not counted (slot 0), and that is logged.
absl::StatusOr<SlotChange> AssignSlots(int counters_fd, PolicyCounterSlots& slots,
                                       uint32_t endpoint_id, int current_fd,
                                       std::vector<MapEntry>& entries) {
  std::unordered_map<uint64_t, uint32_t> current;
  if (current_fd >= 0) {
    absl::StatusOr<std::unordered_map<uint64_t, uint32_t>> read = SlotsOf(current_fd);
    if (!read.ok()) return read.status();
    current = *std::move(read);
  }
  absl::StatusOr<size_t> cpus = PossibleCpus();
  if (!cpus.ok()) return cpus.status();
  const std::vector<ebpfcni_packet_counter> zeros(*cpus);
  SlotChange change;
  size_t uncounted = 0;
  for (MapEntry& entry : entries) {
    if (!IsRuleKey(entry.key)) continue;
    if (auto it = current.find(PackedKey(entry.key)); it != current.end()) {
      entry.value.counter_slot = it->second;
      current.erase(it);
      continue;
    }
    uint32_t slot = slots.Allocate();
    entry.value.counter_slot = slot;
    if (slot == EBPFCNI_POLICY_COUNTER_NONE) {
      ++uncounted;
      continue;
    }
    change.fresh.push_back(slot);
    if (absl::Status status = WriteSlot(counters_fd, slot, zeros); !status.ok()) {
      for (uint32_t fresh : change.fresh) slots.Release(fresh);
      return status;
    }
  }
  for (const auto& [key, slot] : current) change.dropped.push_back(slot);
  if (uncounted > 0) {
    spdlog::warn(
        "endpoint {}: {} policy entries are enforced but not counted: all {} counter slots "
        "are held (raise --policy_counter_slots)",
        endpoint_id, uncounted, slots.capacity() - 1);
  }
  return change;
}

// Every counter slot the rule entries of a policy map hold.
std::vector<uint32_t> HeldSlots(int map_fd) {
  std::vector<uint32_t> held;
  if (map_fd < 0) return held;
  absl::StatusOr<std::unordered_map<uint64_t, uint32_t>> slots = SlotsOf(map_fd);
  if (!slots.ok()) {
    spdlog::warn("reading the counter slots of a policy map: {}", slots.status().ToString());
    return held;
  }
  for (const auto& [key, slot] : *slots) held.push_back(slot);
  return held;
}

// Writes `entries` (counter slots assigned) as the endpoint's policy: into
// the map now in its slot (`current_fd`) when `write` allows and it is big
// enough, else into a new map swapped into the slot.
absl::Status InstallEntries(int outer_fd, uint32_t endpoint_id, int current_fd,
                            const std::vector<MapEntry>& entries, PolicyMap::Write write) {
  if (write == PolicyMap::Write::kInPlaceWhileUnused) {
    uint32_t capacity = current_fd >= 0 ? MaxEntriesOf(current_fd) : 0;
    if (capacity >= entries.size()) {
      if (absl::Status status = EmptyMap(current_fd, capacity); !status.ok()) return status;
      // Rules first, the configuration entry (isolation) last.
      for (size_t i = entries.size(); i-- > 0;) {
        const MapEntry& entry = entries[i];
        if (bpf_map_update_elem(current_fd, &entry.key, &entry.value, BPF_NOEXIST) != 0) {
          return BpfErrno(absl::StrCat("writing the policy of endpoint ", endpoint_id), errno);
        }
      }
      return absl::OkStatus();
    }
  }
  absl::StatusOr<int> built = BuildInnerMap(entries, endpoint_id);
  if (!built.ok()) return built.status();
  ScopedFd inner(*built);
  // The swap: one update of the outer slot.
  int inner_fd = inner.get();
  if (bpf_map_update_elem(outer_fd, &endpoint_id, &inner_fd, BPF_ANY) != 0) {
    return BpfErrno(absl::StrCat("installing the policy of endpoint ", endpoint_id), errno);
  }
  return absl::OkStatus();
}

}  // namespace

PolicyMap::PolicyMap(const BpfObjects& bpf)
    : PolicyMap(bpf.policy_maps_fd(), bpf.policy_counters_fd(), &bpf.policy_counter_slots()) {}

absl::Status PolicyMap::AdoptCounterSlots(int legacy_stats_fd) {
  absl::StatusOr<size_t> cpus = PossibleCpus();
  if (!cpus.ok()) return cpus.status();
  // First every slot the maps hold, so that handing out new ones below
  // cannot give away a slot a later map holds.
  struct Orphan {
    uint32_t endpoint_id;
    ebpfcni_policy_key key;
    ebpfcni_policy_value value;
  };
  std::vector<Orphan> orphans;
  size_t claimed = 0;
  for (uint32_t endpoint_id = 0; endpoint_id <= EBPFCNI_MAX_ENDPOINT_ID; ++endpoint_id) {
    ScopedFd inner(OpenInner(outer_fd_, endpoint_id));
    if (inner.get() < 0) continue;
    absl::Status status = ForEachMapKey<ebpfcni_policy_key>(
        inner.get(), EBPFCNI_POLICY_MAX_ENTRIES, "a policy map",
        [&](const ebpfcni_policy_key& key) -> absl::Status {
          ebpfcni_policy_value value{};
          if (!IsRuleKey(key) || bpf_map_lookup_elem(inner.get(), &key, &value) != 0) {
            return absl::OkStatus();
          }
          if (slots_->Claim(value.counter_slot)) {
            ++claimed;
          } else {
            orphans.push_back({endpoint_id, key, value});
          }
          return absl::OkStatus();
        });
    if (!status.ok()) return status;
  }
  size_t carried = 0;
  size_t uncounted = 0;
  std::vector<ebpfcni_packet_counter> per_cpu(*cpus);
  for (Orphan& orphan : orphans) {
    uint32_t slot = slots_->Allocate();
    if (slot == EBPFCNI_POLICY_COUNTER_NONE) {
      ++uncounted;
      continue;
    }
    std::fill(per_cpu.begin(), per_cpu.end(), ebpfcni_packet_counter{});
    ebpfcni_policy_stats_key legacy_key{};
    legacy_key.endpoint_id = orphan.endpoint_id;
    legacy_key.rule = orphan.key;
    if (legacy_stats_fd >= 0 &&
        bpf_map_lookup_elem(legacy_stats_fd, &legacy_key, per_cpu.data()) == 0) {
      ++carried;
    }
    if (absl::Status status = WriteSlot(counters_fd_, slot, per_cpu); !status.ok()) return status;
    orphan.value.counter_slot = slot;
    ScopedFd inner(OpenInner(outer_fd_, orphan.endpoint_id));
    // Replaces the value in one step: a program sees the old or the new.
    if (inner.get() < 0 ||
        bpf_map_update_elem(inner.get(), &orphan.key, &orphan.value, BPF_EXIST) != 0) {
      return BpfErrno(absl::StrCat("giving a counter slot to a policy entry of endpoint ",
                                   orphan.endpoint_id),
                      errno);
    }
  }
  if (!orphans.empty() || claimed > 0) {
    spdlog::info(
        "policy counters: {} entries hold their slot, {} got a new one ({} with their count "
        "carried over from policy_stats), {} uncounted; {} of {} slots free",
        claimed, orphans.size() - uncounted, carried, uncounted, slots_->available(),
        slots_->capacity() - 1);
  }
  if (uncounted > 0) {
    spdlog::warn("{} policy entries are enforced but not counted: all counter slots are held "
                 "(raise --policy_counter_slots)",
                 uncounted);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<uint64_t, uint64_t>> PolicyMap::SlotCount(uint32_t slot) const {
  if (slot == EBPFCNI_POLICY_COUNTER_NONE) return std::pair<uint64_t, uint64_t>{0, 0};
  absl::StatusOr<size_t> cpus = PossibleCpus();
  if (!cpus.ok()) return cpus.status();
  std::vector<ebpfcni_packet_counter> per_cpu(*cpus);
  if (bpf_map_lookup_elem(counters_fd_, &slot, per_cpu.data()) != 0) {
    // A slot beyond the array (it shrank) has no counters.
    if (errno == ENOENT) return std::pair<uint64_t, uint64_t>{0, 0};
    return BpfErrno(absl::StrCat("reading policy counter slot ", slot), errno);
  }
  uint64_t packets = 0, bytes = 0;
  for (const ebpfcni_packet_counter& c : per_cpu) {
    packets += c.packets;
    bytes += c.bytes;
  }
  return std::pair{packets, bytes};
}

bool PolicyMap::HasMap(uint32_t endpoint_id) const {
  uint32_t inner_id = 0;
  return bpf_map_lookup_elem(outer_fd_, &endpoint_id, &inner_id) == 0;
}

absl::Status PolicyMap::InstallSpare(uint32_t endpoint_id) const {
  LIBBPF_OPTS(bpf_map_create_opts, options, .map_flags = BPF_F_NO_PREALLOC);
  ScopedFd inner(bpf_map_create(BPF_MAP_TYPE_HASH, "ebpfcni_policy", sizeof(ebpfcni_policy_key),
                                sizeof(ebpfcni_policy_value), InnerCapacity(1), &options));
  if (inner.get() < 0) return BpfErrno("creating a spare policy map", errno);
  int inner_fd = inner.get();
  if (bpf_map_update_elem(outer_fd_, &endpoint_id, &inner_fd, BPF_ANY) != 0) {
    return BpfErrno(absl::StrCat("installing a spare policy map for id ", endpoint_id), errno);
  }
  return absl::OkStatus();
}

bool PolicyMap::HasSpare(uint32_t endpoint_id, size_t entries) const {
  ScopedFd inner(OpenInner(outer_fd_, endpoint_id));
  if (inner.get() < 0) return false;
  ebpfcni_policy_key config = ConfigKey();
  ebpfcni_policy_value value{};
  if (bpf_map_lookup_elem(inner.get(), &config, &value) == 0) return false;  // in use
  return MaxEntriesOf(inner.get()) >= entries;
}

absl::Status PolicyMap::Replace(uint32_t endpoint_id, const EndpointPolicy& policy,
                                Write write) {
  absl::StatusOr<std::vector<MapEntry>> checked = CheckedEntriesOf(policy);
  if (!checked.ok()) return checked.status();
  std::vector<MapEntry> entries = *std::move(checked);
  ScopedFd current(OpenInner(outer_fd_, endpoint_id));
  absl::StatusOr<SlotChange> change =
      AssignSlots(counters_fd_, *slots_, endpoint_id, current.get(), entries);
  if (!change.ok()) return change.status();
  absl::Status status = InstallEntries(outer_fd_, endpoint_id, current.get(), entries, write);
  // In: the dropped entries' slots are free. Not in: the fresh ones are.
  for (uint32_t slot : status.ok() ? change->dropped : change->fresh) slots_->Release(slot);
  return status;
}

std::vector<absl::Status> PolicyMap::ReplaceMany(const std::vector<Update>& updates) {
  std::vector<absl::Status> results(updates.size());
  // Built aside, fully written: from here on only the swap is left.
  std::vector<std::unique_ptr<ScopedFd>> inner_maps(updates.size());
  std::vector<uint32_t> slots;
  std::vector<int> slot_maps;
  std::vector<size_t> slot_items;  // index into `updates` per slot
  std::vector<SlotChange> changes(updates.size());
  for (size_t i = 0; i < updates.size(); ++i) {
    std::vector<MapEntry> entries;  // none: an empty map means "no policy"
    if (updates[i].policy.has_value()) {
      absl::StatusOr<std::vector<MapEntry>> checked = CheckedEntriesOf(*updates[i].policy);
      if (!checked.ok()) {
        results[i] = checked.status();
        continue;
      }
      entries = *std::move(checked);
    }
    ScopedFd current(OpenInner(outer_fd_, updates[i].endpoint_id));
    absl::StatusOr<SlotChange> change =
        AssignSlots(counters_fd_, *slots_, updates[i].endpoint_id, current.get(), entries);
    if (!change.ok()) {
      results[i] = change.status();
      continue;
    }
    changes[i] = *std::move(change);
    absl::StatusOr<int> built = BuildInnerMap(entries, updates[i].endpoint_id);
    if (!built.ok()) {
      results[i] = built.status();
      for (uint32_t slot : changes[i].fresh) slots_->Release(slot);
      changes[i] = {};
      continue;
    }
    inner_maps[i] = std::make_unique<ScopedFd>(*built);
    slots.push_back(updates[i].endpoint_id);
    slot_maps.push_back(*built);
    slot_items.push_back(i);
  }

  // The swap of every slot in one syscall, one grace period.
  static std::atomic<bool> batch_supported{true};
  size_t swapped = 0;
  if (!slots.empty() && batch_supported.load()) {
    LIBBPF_OPTS(bpf_map_batch_opts, options, .elem_flags = BPF_ANY);
    uint32_t count = static_cast<uint32_t>(slots.size());
    if (bpf_map_update_batch(outer_fd_, slots.data(), slot_maps.data(), &count, &options) == 0) {
      swapped = slots.size();
    } else {
      int err = errno;
      // Slots before `count` are swapped; a kernel without the command
      // leaves the count untouched (all of them), meaning none.
      swapped = count < slots.size() ? count : 0;
      if (swapped == 0 && BatchUnsupported(err) && batch_supported.exchange(false)) {
        spdlog::warn(
            "the kernel does not batch updates of the policy map-in-map ({}): policies are "
            "swapped one endpoint at a time, one RCU grace period each",
            std::strerror(err));
      }
    }
  }
  // What the batch did not do (unsupported, or stopped at a failing slot):
  // one update per slot, each failure reported for its endpoint alone.
  for (size_t s = swapped; s < slots.size(); ++s) {
    if (bpf_map_update_elem(outer_fd_, &slots[s], &slot_maps[s], BPF_ANY) != 0) {
      results[slot_items[s]] = BpfErrno(
          absl::StrCat("installing the policy of endpoint ", slots[s]), errno);
    }
  }

  // Swapped: the dropped entries' slots are free. Not swapped: the fresh ones.
  for (size_t item : slot_items) {
    const SlotChange& change = changes[item];
    for (uint32_t slot : results[item].ok() ? change.dropped : change.fresh) {
      slots_->Release(slot);
    }
  }
  return results;
}

absl::Status PolicyMap::Clear(uint32_t endpoint_id, Write write) {
  ScopedFd current(OpenInner(outer_fd_, endpoint_id));
  if (current.get() < 0) return absl::OkStatus();  // nothing there
  std::vector<uint32_t> held = HeldSlots(current.get());
  if (write == Write::kInPlaceWhileUnused) {
    if (uint32_t capacity = MaxEntriesOf(current.get()); capacity <= kSpareMaxEntries) {
      if (absl::Status status = EmptyMap(current.get(), capacity); !status.ok()) return status;
      for (uint32_t slot : held) slots_->Release(slot);
      return absl::OkStatus();
    }
  }
  // Array-of-maps slots are emptied by delete.
  if (bpf_map_delete_elem(outer_fd_, &endpoint_id) != 0 && errno != ENOENT) {
    return BpfErrno(absl::StrCat("removing the policy of endpoint ", endpoint_id), errno);
  }
  for (uint32_t slot : held) slots_->Release(slot);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<PolicyMap::Installed>> PolicyMap::ReadInstalled(
    uint32_t endpoint_id) const {
  ScopedFd inner(OpenInner(outer_fd_, endpoint_id));
  if (inner.get() < 0) {
    if (errno == ENOENT) return std::nullopt;
    return BpfErrno(absl::StrCat("opening the policy map of endpoint ", endpoint_id), errno);
  }
  Installed installed;
  bool has_config = false;
  // Range blocks by the rule they belong to, merged into ranges below.
  struct Block {
    uint16_t first;
    uint32_t last;
    uint32_t slot;
  };
  std::map<std::tuple<uint8_t, uint32_t, uint8_t, uint8_t, uint32_t>, std::vector<Block>> blocks;
  absl::Status status = ForEachMapKey<ebpfcni_policy_key>(
      inner.get(), EBPFCNI_POLICY_MAX_ENTRIES, "a policy map",
      [&](const ebpfcni_policy_key& key) -> absl::Status {
        ebpfcni_policy_value value{};
        if (bpf_map_lookup_elem(inner.get(), &key, &value) != 0) return absl::OkStatus();
        if (key.direction == EBPFCNI_POLICY_CONFIG) {
          if (key.dport != 0) return absl::OkStatus();  // range lengths: derived data
          has_config = true;
          installed.policy.ingress_isolated =
              value.rule_id_or_flags & EBPFCNI_POLICY_F_ISOLATED_INGRESS;
          installed.policy.egress_isolated =
              value.rule_id_or_flags & EBPFCNI_POLICY_F_ISOLATED_EGRESS;
          installed.policy.verdict_events =
              value.rule_id_or_flags & EBPFCNI_POLICY_F_VERDICT_EVENTS;
          return absl::OkStatus();
        }
        uint8_t direction = EBPFCNI_POLICY_RANGE_DIRECTION_OF(key.direction);
        if (direction != 0) {
          uint8_t prefix_length = EBPFCNI_POLICY_RANGE_PLEN_OF(key.direction);
          if (prefix_length > EBPFCNI_POLICY_PORT_BITS) return absl::OkStatus();
          PortBlock block{ntohs(key.dport), prefix_length};
          blocks[{direction, key.peer_identity, key.protocol, static_cast<uint8_t>(value.action),
                  value.rule_id_or_flags}]
              .push_back(Block{block.first, block.last(), value.counter_slot});
          return absl::OkStatus();
        }
        PolicyRule rule;
        rule.direction = static_cast<PolicyDirection>(key.direction);
        rule.peer_identity = key.peer_identity;
        rule.protocol = key.protocol;
        rule.port = ntohs(key.dport);
        rule.action = static_cast<PolicyAction>(value.action);
        rule.rule_id = value.rule_id_or_flags;
        installed.policy.rules.push_back(rule);
        installed.slots.push_back({value.counter_slot});
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  if (!has_config) return std::nullopt;  // a spare: no policy
  // Adjacent blocks of one rule become one range again.
  for (auto& [group, list] : blocks) {
    const auto& [direction, peer, protocol, action, rule_id] = group;
    std::sort(list.begin(), list.end(),
              [](const Block& a, const Block& b) { return a.first < b.first; });
    for (size_t i = 0; i < list.size();) {
      PolicyRule rule;
      rule.direction = static_cast<PolicyDirection>(direction);
      rule.peer_identity = peer;
      rule.protocol = protocol;
      rule.action = static_cast<PolicyAction>(action);
      rule.rule_id = rule_id;
      rule.port = list[i].first;
      uint32_t last = list[i].last;
      std::vector<uint32_t> slots = {list[i].slot};
      for (++i; i < list.size() && list[i].first == last + 1; ++i) {
        last = list[i].last;
        slots.push_back(list[i].slot);
      }
      rule.end_port = static_cast<uint16_t>(last);
      installed.policy.rules.push_back(rule);
      installed.slots.push_back(std::move(slots));
    }
  }
  // Hash order is arbitrary; a stable order makes dumps comparable.
  std::vector<size_t> order(installed.policy.rules.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const std::vector<PolicyRule>& rules = installed.policy.rules;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(rules[a].rule_id, rules[a].direction, rules[a].peer_identity,
                    rules[a].protocol, rules[a].port, rules[a].end_port) <
           std::tie(rules[b].rule_id, rules[b].direction, rules[b].peer_identity,
                    rules[b].protocol, rules[b].port, rules[b].end_port);
  });
  Installed sorted;
  sorted.policy = installed.policy;
  sorted.policy.rules.clear();
  for (size_t i : order) {
    sorted.policy.rules.push_back(installed.policy.rules[i]);
    sorted.slots.push_back(std::move(installed.slots[i]));
  }
  return sorted;
}

absl::StatusOr<std::optional<EndpointPolicy>> PolicyMap::Read(uint32_t endpoint_id) const {
  absl::StatusOr<std::optional<Installed>> installed = ReadInstalled(endpoint_id);
  if (!installed.ok()) return installed.status();
  if (!installed->has_value()) return std::nullopt;
  return (*installed)->policy;
}

absl::StatusOr<std::vector<PolicyEntryCounters>> PolicyMap::ReadCounters(
    uint32_t endpoint_id) const {
  absl::StatusOr<std::optional<Installed>> installed = ReadInstalled(endpoint_id);
  if (!installed.ok()) return installed.status();
  std::vector<PolicyEntryCounters> entries;
  if (!installed->has_value()) return entries;
  const Installed& policy = **installed;
  for (size_t i = 0; i < policy.policy.rules.size(); ++i) {
    PolicyEntryCounters entry;
    entry.rule = policy.policy.rules[i];
    for (uint32_t slot : policy.slots[i]) {
      absl::StatusOr<std::pair<uint64_t, uint64_t>> count = SlotCount(slot);
      if (!count.ok()) return count.status();
      entry.packets += count->first;
      entry.bytes += count->second;
    }
    entries.push_back(entry);
  }
  return entries;
}

absl::StatusOr<std::pair<uint64_t, uint64_t>> PolicyMap::RuleHits(
    uint32_t endpoint_id, const EndpointPolicy& policy) const {
  ScopedFd inner(OpenInner(outer_fd_, endpoint_id));
  if (inner.get() < 0) {
    if (errno == ENOENT) return std::pair<uint64_t, uint64_t>{0, 0};
    return BpfErrno(absl::StrCat("opening the policy map of endpoint ", endpoint_id), errno);
  }
  std::set<uint64_t> counted;  // blocks shared by ranges count once
  uint64_t packets = 0, bytes = 0;
  for (const PolicyRule& rule : policy.rules) {
    for (const ebpfcni_policy_key& key : KeysOf(rule)) {
      if (!counted.insert(PackedKey(key)).second) continue;
      ebpfcni_policy_value value{};
      if (bpf_map_lookup_elem(inner.get(), &key, &value) != 0) {
        if (errno == ENOENT) continue;
        return BpfErrno("reading a policy entry", errno);
      }
      absl::StatusOr<std::pair<uint64_t, uint64_t>> count = SlotCount(value.counter_slot);
      if (!count.ok()) return count.status();
      packets += count->first;
      bytes += count->second;
    }
  }
  return std::pair{packets, bytes};
}

}  // namespace ebpfcni::datapath
