#include "services/datapath/ipcache_map.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_map_util.h"
#include "services/datapath/bpf_objects.h"

namespace ebpfcni::datapath {
namespace {

bool IsWholeAddress(const IpPrefix& prefix) {
  return prefix.length() == prefix.address().max_prefix_length();
}

ebpfcni_ipcache_key TrieKeyOf(const IpPrefix& prefix) {
  ebpfcni_ipcache_key key{};
  IpAddress network = prefix.Network();
  key.prefixlen = EBPFCNI_IPCACHE_PREFIX_BASE + prefix.length();
  key.family = network.is_v4() ? EBPFCNI_FAMILY_IPV4 : EBPFCNI_FAMILY_IPV6;
  std::memcpy(key.addr, network.data(), network.size());
  return key;
}

ebpfcni_ipcache_exact_key ExactKeyOf(const IpAddress& address) {
  ebpfcni_ipcache_exact_key key{};
  key.family = address.is_v4() ? EBPFCNI_FAMILY_IPV4 : EBPFCNI_FAMILY_IPV6;
  std::memcpy(key.addr, address.data(), address.size());
  return key;
}

// ipcache4's key: the address bytes as they are in the packet.
uint32_t Exact4KeyOf(const IpAddress& address) {
  uint32_t key;
  std::memcpy(&key, address.data(), sizeof(key));
  return key;
}

IpAddress AddressOf(uint8_t family, const uint8_t* addr) {
  return family == EBPFCNI_FAMILY_IPV4 ? IpAddress::FromV4Bytes(addr)
                                       : IpAddress::FromV6Bytes(addr);
}

IpPrefix PrefixOf(const ebpfcni_ipcache_key& key) {
  return IpPrefix(AddressOf(key.family, key.addr),
                  static_cast<int>(key.prefixlen) - EBPFCNI_IPCACHE_PREFIX_BASE);
}

absl::Status WriteError(const IpPrefix& prefix, uint32_t identity, int err) {
  absl::Status status =
      BpfErrno(absl::StrCat("writing ipcache ", prefix.ToString(), " -> ", identity), err);
  if (absl::IsResourceExhausted(status)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        status.message(), " (the ipcache holds at most ", EBPFCNI_IPCACHE_MAX_ENTRIES,
        " whole addresses and as many shorter prefixes)"));
  }
  return status;
}

}  // namespace

IpCacheMap::IpCacheMap(const BpfObjects& bpf)
    : IpCacheMap(bpf.ipcache4_fd(), bpf.ipcache_exact_fd(), bpf.ipcache_fd()) {}

absl::StatusOr<size_t> IpCacheMap::AdoptEarlierIpv4Entries() {
  std::vector<std::pair<uint32_t, ebpfcni_ipcache_value>> earlier;
  absl::Status status = ForEachMapKey<ebpfcni_ipcache_exact_key>(
      exact_fd_, EBPFCNI_IPCACHE_MAX_ENTRIES, "the ipcache",
      [&](const ebpfcni_ipcache_exact_key& key) -> absl::Status {
        ebpfcni_ipcache_value value{};
        if (key.family != EBPFCNI_FAMILY_IPV4 ||
            bpf_map_lookup_elem(exact_fd_, &key, &value) != 0) {
          return absl::OkStatus();
        }
        earlier.emplace_back(Exact4KeyOf(AddressOf(key.family, key.addr)), value);
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  size_t copied = 0;
  for (const auto& [address, value] : earlier) {
    // An entry ipcache4 already has is newer (written by this version).
    if (bpf_map_update_elem(exact4_fd_, &address, &value, BPF_NOEXIST) == 0) {
      ++copied;
    } else if (errno != EEXIST) {
      return BpfErrno("copying an IPv4 address of an earlier version's ipcache", errno);
    }
  }
  return copied;
}

absl::Status IpCacheMap::Upsert(const IpPrefix& prefix, uint32_t identity) {
  ebpfcni_ipcache_value value{};
  value.identity = identity;
  if (!IsWholeAddress(prefix)) {
    ebpfcni_ipcache_key key = TrieKeyOf(prefix);
    if (bpf_map_update_elem(trie_fd_, &key, &value, BPF_ANY) != 0) {
      return WriteError(prefix, identity, errno);
    }
    return absl::OkStatus();
  }
  ebpfcni_ipcache_exact_key key = ExactKeyOf(prefix.address());
  if (prefix.address().is_v4()) {
    uint32_t key4 = Exact4KeyOf(prefix.address());
    if (bpf_map_update_elem(exact4_fd_, &key4, &value, BPF_ANY) != 0) {
      return WriteError(prefix, identity, errno);
    }
    // An earlier version's copy in ipcache_exact (see the header).
    if (bpf_map_update_elem(exact_fd_, &key, &value, BPF_EXIST) != 0 && errno != ENOENT) {
      return WriteError(prefix, identity, errno);
    }
  } else if (bpf_map_update_elem(exact_fd_, &key, &value, BPF_ANY) != 0) {
    return WriteError(prefix, identity, errno);
  }
  // Earlier versions kept whole addresses in the trie. Such a copy is kept
  // current (not removed): during an upgrade the previous programs, which
  // only know the trie, run until their filters are swapped, and must see
  // the same identity. Delete removes all of them.
  ebpfcni_ipcache_key trie_key = TrieKeyOf(prefix);
  if (bpf_map_update_elem(trie_fd_, &trie_key, &value, BPF_EXIST) != 0 && errno != ENOENT) {
    return WriteError(prefix, identity, errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> IpCacheMap::Delete(const IpPrefix& prefix) {
  bool existed = false;
  if (IsWholeAddress(prefix)) {
    if (prefix.address().is_v4()) {
      uint32_t key4 = Exact4KeyOf(prefix.address());
      if (bpf_map_delete_elem(exact4_fd_, &key4) == 0) {
        existed = true;
      } else if (errno != ENOENT) {
        return BpfErrno(absl::StrCat("deleting ipcache ", prefix.ToString()), errno);
      }
    }
    // IPv6, or an earlier version's IPv4 copy.
    ebpfcni_ipcache_exact_key key = ExactKeyOf(prefix.address());
    if (bpf_map_delete_elem(exact_fd_, &key) == 0) {
      existed = true;
    } else if (errno != ENOENT) {
      return BpfErrno(absl::StrCat("deleting ipcache ", prefix.ToString()), errno);
    }
  }
  // Whole addresses too: an earlier version may have left one in the trie.
  ebpfcni_ipcache_key key = TrieKeyOf(prefix);
  if (bpf_map_delete_elem(trie_fd_, &key) == 0) {
    existed = true;
  } else if (errno != ENOENT) {
    return BpfErrno(absl::StrCat("deleting ipcache ", prefix.ToString()), errno);
  }
  return existed;
}

absl::StatusOr<uint32_t> IpCacheMap::Lookup(const IpAddress& address) const {
  // The programs' order: the exact address, then the longest prefix.
  ebpfcni_ipcache_value value{};
  ebpfcni_ipcache_exact_key exact = ExactKeyOf(address);
  uint32_t exact4 = address.is_v4() ? Exact4KeyOf(address) : 0;
  if ((address.is_v4() ? bpf_map_lookup_elem(exact4_fd_, &exact4, &value)
                       : bpf_map_lookup_elem(exact_fd_, &exact, &value)) == 0) {
    return value.identity;
  }
  if (errno != ENOENT) {
    return BpfErrno(absl::StrCat("looking up ", address.ToString(), " in the ipcache"), errno);
  }
  // A full-length key: the trie answers with the longest matching prefix.
  ebpfcni_ipcache_key key = TrieKeyOf(IpPrefix(address, address.max_prefix_length()));
  if (bpf_map_lookup_elem(trie_fd_, &key, &value) != 0) {
    if (errno == ENOENT) {
      return address.is_v4() ? EBPFCNI_IDENTITY_WORLD_IPV4 : EBPFCNI_IDENTITY_WORLD_IPV6;
    }
    return BpfErrno(absl::StrCat("looking up ", address.ToString(), " in the ipcache"), errno);
  }
  return value.identity;
}

absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>> IpCacheMap::List() const {
  // Ordered by prefix; an exact entry wins over a trie copy of the same
  // address (as in the programs).
  std::map<IpPrefix, uint32_t> entries;
  absl::Status status = ForEachMapKey<ebpfcni_ipcache_key>(
      trie_fd_, EBPFCNI_IPCACHE_MAX_ENTRIES, "the ipcache trie",
      [&](const ebpfcni_ipcache_key& key) -> absl::Status {
        ebpfcni_ipcache_value value{};
        if (bpf_map_lookup_elem(trie_fd_, &key, &value) == 0) {
          entries[PrefixOf(key)] = value.identity;
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  status = ForEachMapKey<ebpfcni_ipcache_exact_key>(
      exact_fd_, EBPFCNI_IPCACHE_MAX_ENTRIES, "the ipcache",
      [&](const ebpfcni_ipcache_exact_key& key) -> absl::Status {
        ebpfcni_ipcache_value value{};
        if (bpf_map_lookup_elem(exact_fd_, &key, &value) == 0) {
          IpAddress address = AddressOf(key.family, key.addr);
          entries[IpPrefix(address, address.max_prefix_length())] = value.identity;
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  status = ForEachMapKey<uint32_t>(
      exact4_fd_, EBPFCNI_IPCACHE_MAX_ENTRIES, "the IPv4 ipcache",
      [&](uint32_t key) -> absl::Status {
        ebpfcni_ipcache_value value{};
        if (bpf_map_lookup_elem(exact4_fd_, &key, &value) == 0) {
          IpAddress address = IpAddress::FromV4Bytes(reinterpret_cast<const uint8_t*>(&key));
          entries[IpPrefix(address, 32)] = value.identity;
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return std::vector<std::pair<IpPrefix, uint32_t>>(entries.begin(), entries.end());
}

}  // namespace ebpfcni::datapath
