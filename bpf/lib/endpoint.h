/* Resolving which endpoint a packet belongs to. */
#ifndef EBPFCNI_BPF_LIB_ENDPOINT_H
#define EBPFCNI_BPF_LIB_ENDPOINT_H

#include "common.h"
#include "maps.h"

/* Copies the endpoint owning host-side interface `ifindex` to `out`; false
 * when the interface is not (or no longer) one of ours, e.g. between
 * DeleteEndpoint and the filter going away. A copy, not a pointer into
 * either map: the verifier then sees the same state after both lookups and
 * explores the rest of the program once instead of once per map. */
static __always_inline bool lookup_endpoint(__u32 ifindex, struct ebpfcni_endpoint_info *out)
{
	struct ebpfcni_endpoint_info *endpoint;

	if (ifindex >= EBPFCNI_ENDPOINT_ARRAY_ENTRIES) {
		endpoint = bpf_map_lookup_elem(&endpoint_ifidx, &ifindex);
		if (!endpoint)
			return false;
	} else {
		/* The array is authoritative below its bound: an empty slot is
		 * an interface that is not ours, without asking the hash. */
		endpoint = bpf_map_lookup_elem(&endpoint_array, &ifindex);
		if (!endpoint || endpoint->endpoint_id == EBPFCNI_ENDPOINT_ID_NONE)
			return false;
	}
	out->endpoint_id = endpoint->endpoint_id;
	out->identity = endpoint->identity;
	return true;
}

#endif /* EBPFCNI_BPF_LIB_ENDPOINT_H */
