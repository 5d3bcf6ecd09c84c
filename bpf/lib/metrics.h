/* Node-wide per-CPU counters by verdict and drop reason. */
#ifndef EBPFCNI_BPF_LIB_METRICS_H
#define EBPFCNI_BPF_LIB_METRICS_H

#include "common.h"
#include "maps.h"

static __always_inline void metrics_count(__u32 slot, __u32 bytes)
{
	struct ebpfcni_packet_counter *counter;

	counter = bpf_map_lookup_elem(&metrics, &slot);
	if (!counter)
		return;
	/* Per-CPU slot: no other CPU writes it, plain adds are safe. */
	counter->packets += 1;
	counter->bytes += bytes;
}

#endif /* EBPFCNI_BPF_LIB_METRICS_H */
