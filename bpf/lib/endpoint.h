/* Resolving which endpoint a packet belongs to. */
#ifndef EBPFCNI_BPF_LIB_ENDPOINT_H
#define EBPFCNI_BPF_LIB_ENDPOINT_H

#include "common.h"
#include "maps.h"

/* The endpoint owning host-side interface `ifindex`, or NULL when the
 * interface is not (or no longer) one of ours, e.g. between DeleteEndpoint
 * and the filter going away. */
static __always_inline struct ebpfcni_endpoint_info *lookup_endpoint(__u32 ifindex)
{
	return bpf_map_lookup_elem(&endpoint_ifidx, &ifindex);
}

#endif /* EBPFCNI_BPF_LIB_ENDPOINT_H */
