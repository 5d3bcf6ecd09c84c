/* IP address -> security identity: the family's exact-address hash first
 * (pods and the node's addresses, one hash lookup), then the longest prefix
 * of the trie (CIDR peers, other nodes' pod ranges). */
#ifndef EBPFCNI_BPF_LIB_IPCACHE_H
#define EBPFCNI_BPF_LIB_IPCACHE_H

#include "common.h"
#include "maps.h"

/* The longest prefix of the trie covering `addr`; the family's world
 * identity (world-ipv4, world-ipv6) when none does. */
static __always_inline __u32 ipcache_lookup_prefix(__u8 family, const __u8 *addr)
{
	struct ebpfcni_ipcache_key key = {};
	struct ebpfcni_ipcache_value *value;

	key.family = family;
	if (family == EBPFCNI_FAMILY_IPV4) {
		key.prefixlen = EBPFCNI_IPCACHE_PREFIX_BASE + 32;
		__builtin_memcpy(key.addr, addr, 4);
	} else {
		key.prefixlen = EBPFCNI_IPCACHE_PREFIX_BASE + 128;
		__builtin_memcpy(key.addr, addr, 16);
	}
	value = bpf_map_lookup_elem(&ipcache, &key);
	if (value)
		return value->identity;
	return family == EBPFCNI_FAMILY_IPV4 ? EBPFCNI_IDENTITY_WORLD_IPV4 :
					       EBPFCNI_IDENTITY_WORLD_IPV6;
}

/* Identity of `addr` (family EBPFCNI_FAMILY_*): the whole address, else the
 * longest prefix, else the family's world identity. */
static __always_inline __u32 ipcache_lookup(__u8 family, const __u8 *addr)
{
	struct ebpfcni_ipcache_value *value;

	if (family == EBPFCNI_FAMILY_IPV4) {
		__u32 addr4;

		__builtin_memcpy(&addr4, addr, 4);
		value = bpf_map_lookup_elem(&ipcache4, &addr4);
	} else {
		struct ebpfcni_ipcache_exact_key exact = {};

		exact.family = family;
		__builtin_memcpy(exact.addr, addr, 16);
		value = bpf_map_lookup_elem(&ipcache_exact, &exact);
	}
	if (value)
		return value->identity;
	return ipcache_lookup_prefix(family, addr);
}

#endif /* EBPFCNI_BPF_LIB_IPCACHE_H */
