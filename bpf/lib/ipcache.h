/* IP address -> security identity: the exact-address hash first (pods and
 * the node's addresses, one hash lookup), then the longest prefix of the
 * trie (CIDR peers, other nodes' pod ranges). */
#ifndef EBPFCNI_BPF_LIB_IPCACHE_H
#define EBPFCNI_BPF_LIB_IPCACHE_H

#include "common.h"
#include "maps.h"

/* Identity of `addr` (family EBPFCNI_FAMILY_*); the reserved world identity
 * of the family (world-ipv4, world-ipv6) when nothing covers it. */
static __always_inline __u32 ipcache_lookup(__u8 family, const __u8 *addr)
{
	struct ebpfcni_ipcache_exact_key exact = {};
	struct ebpfcni_ipcache_key key = {};
	struct ebpfcni_ipcache_value *value;

	exact.family = family;
	key.family = family;
	if (family == EBPFCNI_FAMILY_IPV4) {
		__builtin_memcpy(exact.addr, addr, 4);
		value = bpf_map_lookup_elem(&ipcache_exact, &exact);
		if (value)
			return value->identity;
		key.prefixlen = EBPFCNI_IPCACHE_PREFIX_BASE + 32;
		__builtin_memcpy(key.addr, addr, 4);
	} else {
		__builtin_memcpy(exact.addr, addr, 16);
		value = bpf_map_lookup_elem(&ipcache_exact, &exact);
		if (value)
			return value->identity;
		key.prefixlen = EBPFCNI_IPCACHE_PREFIX_BASE + 128;
		__builtin_memcpy(key.addr, addr, 16);
	}
	value = bpf_map_lookup_elem(&ipcache, &key);
	if (value)
		return value->identity;
	return family == EBPFCNI_FAMILY_IPV4 ? EBPFCNI_IDENTITY_WORLD_IPV4 :
					       EBPFCNI_IDENTITY_WORLD_IPV6;
}

#endif /* EBPFCNI_BPF_LIB_IPCACHE_H */
