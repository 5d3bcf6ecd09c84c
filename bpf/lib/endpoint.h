/* Resolving which endpoint a packet belongs to. */
#ifndef EBPFCNI_BPF_LIB_ENDPOINT_H
#define EBPFCNI_BPF_LIB_ENDPOINT_H

#include "common.h"
#include "maps.h"

/* The endpoint owning the host-side interface the packet is on, or
 * EBPFCNI_ENDPOINT_ID_NONE when the interface is not (or no longer) one of
 * ours, e.g. between DeleteEndpoint and the filter going away. */
static __always_inline __u32 lookup_endpoint_id(const struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct ebpfcni_endpoint_info *info;

	info = bpf_map_lookup_elem(&endpoint_ifidx, &ifindex);
	if (!info)
		return EBPFCNI_ENDPOINT_ID_NONE;
	return info->endpoint_id;
}

#endif /* EBPFCNI_BPF_LIB_ENDPOINT_H */
