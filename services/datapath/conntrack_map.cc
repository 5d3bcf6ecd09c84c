#include "services/datapath/conntrack_map.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_map_util.h"

namespace ebpfcni::datapath {
namespace {

// Keys read per batch: one syscall per 4096 entries instead of one per entry
// (the table holds up to EBPFCNI_CT_MAX_ENTRIES flows).
constexpr uint32_t kBatch = 4096;

struct AddressKey {
  uint8_t family;
  uint8_t bytes[16];
  bool Matches(uint8_t key_family, const uint8_t* addr) const {
    return key_family == family && std::memcmp(addr, bytes, family == EBPFCNI_FAMILY_IPV4 ? 4 : 16) == 0;
  }
};

// Every key of the map, read in batches; falls back to key-by-key
// iteration where batch reads are not supported.
absl::StatusOr<std::vector<ebpfcni_ct_key>> AllKeys(int fd) {
  std::vector<ebpfcni_ct_key> keys;
  std::vector<ebpfcni_ct_key> batch_keys(kBatch);
  std::vector<ebpfcni_ct_value> batch_values(kBatch);
  uint64_t in_batch = 0, out_batch = 0;
  bool first = true;
  for (uint32_t round = 0; round <= EBPFCNI_CT_MAX_ENTRIES / kBatch + 1; ++round) {
    uint32_t count = kBatch;
    int rc = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch, batch_keys.data(),
                                  batch_values.data(), &count, nullptr);
    int err = rc != 0 ? errno : 0;
    keys.insert(keys.end(), batch_keys.begin(), batch_keys.begin() + count);
    if (rc != 0) {
      if (err == ENOENT) return keys;  // done
      if (first && (err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP)) break;
      return BpfErrno("reading the conntrack table", err);
    }
    in_batch = out_batch;
    first = false;
  }
  if (!first) return keys;
  keys.clear();
  absl::Status status = ForEachMapKey<ebpfcni_ct_key>(
      fd, EBPFCNI_CT_MAX_ENTRIES, "the conntrack table", [&](const ebpfcni_ct_key& key) {
        keys.push_back(key);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return keys;
}

}  // namespace

absl::StatusOr<size_t> ConntrackMap::DeleteEndpointFlows(uint32_t endpoint_id,
                                                         const std::vector<IpAddress>& addresses) {
  std::vector<AddressKey> owned;
  for (const IpAddress& address : addresses) {
    AddressKey key{};
    key.family = address.is_v4() ? EBPFCNI_FAMILY_IPV4 : EBPFCNI_FAMILY_IPV6;
    std::memcpy(key.bytes, address.data(), address.size());
    owned.push_back(key);
  }
  absl::StatusOr<std::vector<ebpfcni_ct_key>> keys = AllKeys(fd_);
  if (!keys.ok()) return keys.status();
  size_t deleted = 0;
  for (const ebpfcni_ct_key& key : *keys) {
    bool stale = key.endpoint_id == endpoint_id;
    for (const AddressKey& address : owned) {
      if (stale) break;
      stale = address.Matches(key.family, key.saddr) || address.Matches(key.family, key.daddr);
    }
    if (!stale) continue;
    if (bpf_map_delete_elem(fd_, &key) == 0) {
      ++deleted;
    } else if (errno != ENOENT) {  // gone already (expired and evicted): fine
      return BpfErrno("deleting a conntrack entry", errno);
    }
  }
  return deleted;
}

}  // namespace ebpfcni::datapath
