#include "services/datapath/policy_map.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <set>
#include <tuple>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_map_util.h"

namespace ebpfcni::datapath {
namespace {

ebpfcni_policy_key KeyOf(const PolicyRule& rule) {
  ebpfcni_policy_key key{};
  key.peer_identity = rule.peer_identity;
  key.direction = static_cast<uint8_t>(rule.direction);
  key.protocol = rule.protocol;
  key.dport = htons(rule.port);
  return key;
}

ebpfcni_policy_key ConfigKey() {
  ebpfcni_policy_key key{};
  key.direction = EBPFCNI_POLICY_CONFIG;
  return key;
}

// The 8-byte key as one number, for sets of keys.
uint64_t PackedKey(const ebpfcni_policy_key& key) {
  static_assert(sizeof(ebpfcni_policy_key) == sizeof(uint64_t));
  uint64_t packed;
  std::memcpy(&packed, &key, sizeof(packed));
  return packed;
}

// The rule's position in the lookup order (EBPFCNI_POLICY_F_SHAPE).
uint32_t ShapeLevel(const PolicyRule& rule) {
  bool peer = rule.peer_identity != 0;
  if (rule.protocol == 0) return peer ? 2 : 5;
  if (rule.port == 0) return peer ? 1 : 4;
  return peer ? 0 : 3;
}

// Opens the inner map currently in the slot; -1 with errno ENOENT if none.
int OpenInner(int outer_fd, uint32_t endpoint_id) {
  uint32_t inner_id = 0;
  if (bpf_map_lookup_elem(outer_fd, &endpoint_id, &inner_id) != 0) return -1;
  return bpf_map_get_fd_by_id(inner_id);
}

}  // namespace

absl::Status PolicyMap::Replace(uint32_t endpoint_id, const EndpointPolicy& policy) {
  if (absl::Status status = ValidatePolicy(policy); !status.ok()) return status;
  LIBBPF_OPTS(bpf_map_create_opts, options, .map_flags = BPF_F_NO_PREALLOC);
  ScopedFd inner(bpf_map_create(BPF_MAP_TYPE_HASH, "ebpfcni_policy", sizeof(ebpfcni_policy_key),
                                sizeof(ebpfcni_policy_value), EBPFCNI_POLICY_MAX_ENTRIES,
                                &options));
  if (inner.get() < 0) {
    return BpfErrno(absl::StrCat("creating a policy map for endpoint ", endpoint_id), errno);
  }
  ebpfcni_policy_value config{};
  config.rule_id_or_flags = (policy.ingress_isolated ? EBPFCNI_POLICY_F_ISOLATED_INGRESS : 0) |
                            (policy.egress_isolated ? EBPFCNI_POLICY_F_ISOLATED_EGRESS : 0) |
                            (policy.verdict_events ? EBPFCNI_POLICY_F_VERDICT_EVENTS : 0);
  for (const PolicyRule& rule : policy.rules) {
    config.rule_id_or_flags |= EBPFCNI_POLICY_F_SHAPE(static_cast<uint32_t>(rule.direction),
                                                      ShapeLevel(rule));
  }
  ebpfcni_policy_key config_key = ConfigKey();
  if (bpf_map_update_elem(inner.get(), &config_key, &config, BPF_NOEXIST) != 0) {
    return BpfErrno("writing the policy configuration entry", errno);
  }
  for (const PolicyRule& rule : policy.rules) {
    ebpfcni_policy_key key = KeyOf(rule);
    ebpfcni_policy_value value{};
    value.action = static_cast<uint8_t>(rule.action);
    value.rule_id_or_flags = rule.rule_id;
    if (bpf_map_update_elem(inner.get(), &key, &value, BPF_NOEXIST) != 0) {
      return BpfErrno(absl::StrCat("writing ", DescribeRule(rule)), errno);
    }
  }
  // The swap: one update of the outer slot.
  int inner_fd = inner.get();
  if (bpf_map_update_elem(outer_fd_, &endpoint_id, &inner_fd, BPF_ANY) != 0) {
    return BpfErrno(absl::StrCat("installing the policy of endpoint ", endpoint_id), errno);
  }
  return DeleteCountersExcept(endpoint_id, &policy);
}

absl::Status PolicyMap::Clear(uint32_t endpoint_id) {
  // Array-of-maps slots are emptied by delete.
  if (bpf_map_delete_elem(outer_fd_, &endpoint_id) != 0 && errno != ENOENT) {
    return BpfErrno(absl::StrCat("removing the policy of endpoint ", endpoint_id), errno);
  }
  return DeleteCountersExcept(endpoint_id, nullptr);
}

absl::StatusOr<std::optional<EndpointPolicy>> PolicyMap::Read(uint32_t endpoint_id) const {
  ScopedFd inner(OpenInner(outer_fd_, endpoint_id));
  if (inner.get() < 0) {
    if (errno == ENOENT) return std::nullopt;
    return BpfErrno(absl::StrCat("opening the policy map of endpoint ", endpoint_id), errno);
  }
  EndpointPolicy policy;
  absl::Status status = ForEachMapKey<ebpfcni_policy_key>(
      inner.get(), EBPFCNI_POLICY_MAX_ENTRIES, "a policy map",
      [&](const ebpfcni_policy_key& key) -> absl::Status {
        ebpfcni_policy_value value{};
        if (bpf_map_lookup_elem(inner.get(), &key, &value) != 0) return absl::OkStatus();
        if (key.direction == EBPFCNI_POLICY_CONFIG) {
          policy.ingress_isolated = value.rule_id_or_flags & EBPFCNI_POLICY_F_ISOLATED_INGRESS;
          policy.egress_isolated = value.rule_id_or_flags & EBPFCNI_POLICY_F_ISOLATED_EGRESS;
          policy.verdict_events = value.rule_id_or_flags & EBPFCNI_POLICY_F_VERDICT_EVENTS;
          return absl::OkStatus();
        }
        PolicyRule rule;
        rule.direction = static_cast<PolicyDirection>(key.direction);
        rule.peer_identity = key.peer_identity;
        rule.protocol = key.protocol;
        rule.port = ntohs(key.dport);
        rule.action = static_cast<PolicyAction>(value.action);
        rule.rule_id = value.rule_id_or_flags;
        policy.rules.push_back(rule);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  // Hash order is arbitrary; a stable order makes dumps comparable.
  std::sort(policy.rules.begin(), policy.rules.end(), [](const PolicyRule& a, const PolicyRule& b) {
    return std::tie(a.rule_id, a.direction, a.peer_identity, a.protocol, a.port) <
           std::tie(b.rule_id, b.direction, b.peer_identity, b.protocol, b.port);
  });
  return policy;
}

absl::StatusOr<std::vector<PolicyEntryCounters>> PolicyMap::ReadCounters(
    uint32_t endpoint_id) const {
  absl::StatusOr<std::optional<EndpointPolicy>> policy = Read(endpoint_id);
  if (!policy.ok()) return policy.status();
  std::vector<PolicyEntryCounters> entries;
  if (!policy->has_value()) return entries;
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return BpfErrno("counting possible CPUs", -cpus);
  std::vector<ebpfcni_packet_counter> per_cpu(cpus);
  for (const PolicyRule& rule : (*policy)->rules) {
    PolicyEntryCounters entry;
    entry.rule = rule;
    ebpfcni_policy_stats_key key{};
    key.endpoint_id = endpoint_id;
    key.rule = KeyOf(rule);
    if (bpf_map_lookup_elem(stats_fd_, &key, per_cpu.data()) == 0) {
      for (const ebpfcni_packet_counter& c : per_cpu) {
        entry.packets += c.packets;
        entry.bytes += c.bytes;
      }
    } else if (errno != ENOENT) {
      return BpfErrno("reading policy counters", errno);
    }
    entries.push_back(entry);
  }
  return entries;
}

absl::Status PolicyMap::DeleteCountersExcept(uint32_t endpoint_id, const EndpointPolicy* keep) {
  std::set<uint64_t> kept;
  if (keep != nullptr) {
    for (const PolicyRule& rule : keep->rules) kept.insert(PackedKey(KeyOf(rule)));
  }
  std::vector<ebpfcni_policy_stats_key> stale;
  absl::Status status = ForEachMapKey<ebpfcni_policy_stats_key>(
      stats_fd_, EBPFCNI_POLICY_STATS_MAX_ENTRIES, "the policy counters",
      [&](const ebpfcni_policy_stats_key& key) -> absl::Status {
        if (key.endpoint_id != endpoint_id) return absl::OkStatus();
        if (kept.contains(PackedKey(key.rule))) return absl::OkStatus();
        stale.push_back(key);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  for (const ebpfcni_policy_stats_key& key : stale) {
    if (bpf_map_delete_elem(stats_fd_, &key) != 0 && errno != ENOENT) {
      return BpfErrno("deleting stale policy counters", errno);
    }
  }
  return absl::OkStatus();
}

}  // namespace ebpfcni::datapath
