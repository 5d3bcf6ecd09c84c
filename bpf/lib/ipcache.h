/* IP address -> security identity, longest prefix wins. */
#ifndef EBPFCNI_BPF_LIB_IPCACHE_H
#define EBPFCNI_BPF_LIB_IPCACHE_H

#include "common.h"
#include "maps.h"

/* Identity of `addr` (family EBPFCNI_FAMILY_*); the reserved world identity
 * when no prefix covers it. */
static __always_inline __u32 ipcache_lookup(__u8 family, const __u8 *addr)
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
	return value ? value->identity : EBPFCNI_IDENTITY_WORLD;
}

#endif /* EBPFCNI_BPF_LIB_IPCACHE_H */
