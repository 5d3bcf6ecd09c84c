#include "services/datapath/ipcache_map.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_map_util.h"

namespace ebpfcni::datapath {
namespace {

ebpfcni_ipcache_key KeyOf(const IpPrefix& prefix) {
  ebpfcni_ipcache_key key{};
  IpAddress network = prefix.Network();
  key.prefixlen = EBPFCNI_IPCACHE_PREFIX_BASE + prefix.length();
  key.family = network.is_v4() ? EBPFCNI_FAMILY_IPV4 : EBPFCNI_FAMILY_IPV6;
  std::memcpy(key.addr, network.data(), network.size());
  return key;
}

IpPrefix PrefixOf(const ebpfcni_ipcache_key& key) {
  IpAddress address = key.family == EBPFCNI_FAMILY_IPV4 ? IpAddress::FromV4Bytes(key.addr)
                                                        : IpAddress::FromV6Bytes(key.addr);
  return IpPrefix(address, static_cast<int>(key.prefixlen) - EBPFCNI_IPCACHE_PREFIX_BASE);
}

}  // namespace

absl::Status IpCacheMap::Upsert(const IpPrefix& prefix, uint32_t identity) {
  ebpfcni_ipcache_key key = KeyOf(prefix);
  ebpfcni_ipcache_value value{};
  value.identity = identity;
  if (bpf_map_update_elem(fd_, &key, &value, BPF_ANY) != 0) {
    absl::Status status = BpfErrno(
        absl::StrCat("writing ipcache ", prefix.ToString(), " -> ", identity), errno);
    if (absl::IsResourceExhausted(status)) {
      return absl::ResourceExhaustedError(absl::StrCat(status.message(), " (the ipcache holds at most ",
                                                       EBPFCNI_IPCACHE_MAX_ENTRIES, " prefixes)"));
    }
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> IpCacheMap::Delete(const IpPrefix& prefix) {
  ebpfcni_ipcache_key key = KeyOf(prefix);
  if (bpf_map_delete_elem(fd_, &key) != 0) {
    if (errno == ENOENT) return false;
    return BpfErrno(absl::StrCat("deleting ipcache ", prefix.ToString()), errno);
  }
  return true;
}

absl::StatusOr<uint32_t> IpCacheMap::Lookup(const IpAddress& address) const {
  // A full-length key: the trie answers with the longest matching prefix.
  ebpfcni_ipcache_key key = KeyOf(IpPrefix(address, address.max_prefix_length()));
  ebpfcni_ipcache_value value{};
  if (bpf_map_lookup_elem(fd_, &key, &value) != 0) {
    if (errno == ENOENT) return EBPFCNI_IDENTITY_WORLD;
    return BpfErrno(absl::StrCat("looking up ", address.ToString(), " in the ipcache"), errno);
  }
  return value.identity;
}

absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> IpCacheMap::List() const {
  std::vector<std::pair<IpPrefix, uint32_t>> entries;
  absl::Status status = ForEachMapKey<ebpfcni_ipcache_key>(
      fd_, EBPFCNI_IPCACHE_MAX_ENTRIES, "the ipcache",
      [&](const ebpfcni_ipcache_key& key) -> absl::Status {
        ebpfcni_ipcache_value value{};
        if (bpf_map_lookup_elem(fd_, &key, &value) == 0) {
          entries.emplace_back(PrefixOf(key), value.identity);
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return entries;
}

}  // namespace ebpfcni::datapath
