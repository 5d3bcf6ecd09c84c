#include "services/datapath/conntrack_map.h"

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_map_util.h"
#include "services/datapath/bpf_objects.h"

namespace ebpfcni::datapath {
namespace {

// Entries read per batch: one syscall per 4096 entries instead of one per
// entry (each table holds up to EBPFCNI_CT_MAX_ENTRIES flows).
constexpr uint32_t kBatch = 4096;

template <typename Key>
struct Flow {
  Key key;
  ebpfcni_ct_value value;
};

// Every (key, value) of one table, read in batches; falls back to
// key-by-key iteration where batch reads are not supported.
template <typename Key>
absl::StatusOr<std::vector<Flow<Key>>> AllFlows(int fd, const char* what) {
  std::vector<Flow<Key>> flows;
  std::vector<Key> batch_keys(kBatch);
  std::vector<ebpfcni_ct_value> batch_values(kBatch);
  uint64_t in_batch = 0, out_batch = 0;
  bool first = true;
  for (uint32_t round = 0; round <= EBPFCNI_CT_MAX_ENTRIES / kBatch + 1; ++round) {
    uint32_t count = kBatch;
    int rc = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch, batch_keys.data(),
                                  batch_values.data(), &count, nullptr);
    int err = rc != 0 ? errno : 0;
    for (uint32_t i = 0; i < count && i < kBatch; ++i) {
      flows.push_back({batch_keys[i], batch_values[i]});
    }
    if (rc != 0) {
      if (err == ENOENT) return flows;  // done
      if (first && (err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP)) break;
      return BpfErrno(absl::StrCat("reading ", what), err);
    }
    in_batch = out_batch;
    first = false;
  }
  if (!first) return flows;
  flows.clear();
  absl::Status status =
      ForEachMapKey<Key>(fd, EBPFCNI_CT_MAX_ENTRIES, what, [&](const Key& key) -> absl::Status {
        Flow<Key> flow{key, {}};
        if (bpf_map_lookup_elem(fd, &key, &flow.value) == 0) flows.push_back(flow);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return flows;
}

template <typename Key>
ConntrackEntry EntryOf(const Key& key, const ebpfcni_ct_value& value) {
  ConntrackEntry entry;
  constexpr bool kV4 = sizeof(key.saddr) == 4;
  entry.family = kV4 ? EBPFCNI_FAMILY_IPV4 : EBPFCNI_FAMILY_IPV6;
  entry.protocol = key.protocol;
  entry.scope = key.scope;
  entry.source = kV4 ? IpAddress::FromV4Bytes(key.saddr) : IpAddress::FromV6Bytes(key.saddr);
  entry.destination = kV4 ? IpAddress::FromV4Bytes(key.daddr) : IpAddress::FromV6Bytes(key.daddr);
  entry.source_port = ntohs(key.sport);
  entry.destination_port = ntohs(key.dport);
  entry.ifindex = key.ifindex;
  entry.endpoint_id = value.endpoint_id;
  entry.rule_id = value.rule_id;
  return entry;
}

// Deletes the entries of one table for which `stale` holds.
template <typename Key>
absl::StatusOr<size_t> DeleteWhere(int fd, const char* what,
                                   const std::function<bool(const ConntrackEntry&)>& stale) {
  absl::StatusOr<std::vector<Flow<Key>>> flows = AllFlows<Key>(fd, what);
  if (!flows.ok()) return flows.status();
  size_t deleted = 0;
  for (const Flow<Key>& flow : *flows) {
    if (!stale(EntryOf(flow.key, flow.value))) continue;
    if (bpf_map_delete_elem(fd, &flow.key) == 0) {
      ++deleted;
    } else if (errno != ENOENT) {  // gone already (expired and evicted): fine
      return BpfErrno(absl::StrCat("deleting an entry of ", what), errno);
    }
  }
  return deleted;
}

absl::StatusOr<size_t> DeleteBoth(int v4_fd, int v6_fd,
                                  const std::function<bool(const ConntrackEntry&)>& stale) {
  absl::StatusOr<size_t> v4 = DeleteWhere<ebpfcni_ct4_key>(v4_fd, "the IPv4 conntrack table", stale);
  if (!v4.ok()) return v4.status();
  absl::StatusOr<size_t> v6 = DeleteWhere<ebpfcni_ct6_key>(v6_fd, "the IPv6 conntrack table", stale);
  if (!v6.ok()) return v6.status();
  return *v4 + *v6;
}

}  // namespace

ConntrackMap::ConntrackMap(const BpfObjects& bpf)
    : ConntrackMap(bpf.conntrack4_fd(), bpf.conntrack6_fd()) {}

absl::StatusOr<size_t> ConntrackMap::DeleteEndpointFlows(uint32_t endpoint_id,
                                                         const std::vector<IpAddress>& addresses) {
  return DeleteBoth(v4_fd_, v6_fd_, [&](const ConntrackEntry& entry) {
    if (entry.endpoint_id == endpoint_id) return true;
    for (const IpAddress& address : addresses) {
      if (entry.source == address || entry.destination == address) return true;
    }
    return false;
  });
}

absl::StatusOr<size_t> ConntrackMap::DeleteInterfaceFlows(uint32_t ifindex) {
  return DeleteBoth(v4_fd_, v6_fd_,
                    [&](const ConntrackEntry& entry) { return entry.ifindex == ifindex; });
}

absl::StatusOr<std::vector<ConntrackEntry>> ConntrackMap::List() const {
  std::vector<ConntrackEntry> entries;
  absl::StatusOr<std::vector<Flow<ebpfcni_ct4_key>>> v4 =
      AllFlows<ebpfcni_ct4_key>(v4_fd_, "the IPv4 conntrack table");
  if (!v4.ok()) return v4.status();
  for (const auto& flow : *v4) entries.push_back(EntryOf(flow.key, flow.value));
  absl::StatusOr<std::vector<Flow<ebpfcni_ct6_key>>> v6 =
      AllFlows<ebpfcni_ct6_key>(v6_fd_, "the IPv6 conntrack table");
  if (!v6.ok()) return v6.status();
  for (const auto& flow : *v6) entries.push_back(EntryOf(flow.key, flow.value));
  return entries;
}

}  // namespace ebpfcni::datapath
