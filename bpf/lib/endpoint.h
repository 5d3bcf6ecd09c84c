/* Resolving which endpoint a packet belongs to. */
#ifndef EBPFCNI_BPF_LIB_ENDPOINT_H
#define EBPFCNI_BPF_LIB_ENDPOINT_H

#include "common.h"
#include "maps.h"

/* The endpoint owning the host-side interface the packet is on, or NULL
 * when the interface is not (or no longer) one of ours, e.g. between
 * DeleteEndpoint and the filter going away. */
static __always_inline struct ebpfcni_endpoint_info *
lookup_endpoint(const struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;

	return bpf_map_lookup_elem(&endpoint_ifidx, &ifindex);
}

#endif /* EBPFCNI_BPF_LIB_ENDPOINT_H */
