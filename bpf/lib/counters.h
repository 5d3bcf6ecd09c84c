/* Per-endpoint packet/byte accounting. */
#ifndef EBPFCNI_BPF_LIB_COUNTERS_H
#define EBPFCNI_BPF_LIB_COUNTERS_H

#include "common.h"
#include "maps.h"

/* Adds one packet of skb->len bytes to the endpoint's counters for the
 * given direction. The map is per-CPU, so plain adds are race-free. */
static __always_inline void count_packet(__u32 endpoint_id,
					 enum ebpfcni_direction direction,
					 const struct __sk_buff *skb)
{
	struct ebpfcni_endpoint_counters *counters;

	counters = bpf_map_lookup_elem(&endpoint_stats, &endpoint_id);
	if (!counters) {
		/* First packet of this endpoint on this CPU's slot: create the
		 * entry (zeroed on every CPU), then count into it. BPF_NOEXIST
		 * keeps a concurrent creation on another CPU from being reset. */
		struct ebpfcni_endpoint_counters zero = {};

		bpf_map_update_elem(&endpoint_stats, &endpoint_id, &zero,
				    BPF_NOEXIST);
		counters = bpf_map_lookup_elem(&endpoint_stats, &endpoint_id);
		if (!counters)
			return; /* map full: accounting is best effort */
	}
	if (direction == EBPFCNI_FROM_POD) {
		counters->from_pod_packets += 1;
		counters->from_pod_bytes += skb->len;
	} else {
		counters->to_pod_packets += 1;
		counters->to_pod_bytes += skb->len;
	}
}

#endif /* EBPFCNI_BPF_LIB_COUNTERS_H */
