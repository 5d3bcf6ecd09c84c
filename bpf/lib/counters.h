/* Per-endpoint packet/byte accounting. */
#ifndef EBPFCNI_BPF_LIB_COUNTERS_H
#define EBPFCNI_BPF_LIB_COUNTERS_H

#include "common.h"
#include "maps.h"

/* Adds one packet of `bytes` to the endpoint's counters for the given
 * direction. The map is a per-CPU array indexed by endpoint id: the lookup
 * is inlined (no helper call), the slot always exists, and plain adds are
 * race-free. */
static __always_inline void count_packet(__u32 endpoint_id,
					 enum ebpfcni_direction direction,
					 __u32 bytes)
{
	struct ebpfcni_endpoint_counters *counters;

	counters = bpf_map_lookup_elem(&endpoint_stats, &endpoint_id);
	if (!counters)
		return; /* id out of range: cannot happen, ids are 16 bits */
	if (direction == EBPFCNI_FROM_POD) {
		counters->from_pod_packets += 1;
		counters->from_pod_bytes += bytes;
	} else {
		counters->to_pod_packets += 1;
		counters->to_pod_bytes += bytes;
	}
}

#endif /* EBPFCNI_BPF_LIB_COUNTERS_H */
