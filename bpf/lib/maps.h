/* Every BPF map of the datapath, in one place so that the programs and the
 * service agree on names (the service pins each map under --bpf_dir by its
 * name and reuses the pin on restart). Map names are at most 15 chars. */
#ifndef EBPFCNI_BPF_LIB_MAPS_H
#define EBPFCNI_BPF_LIB_MAPS_H

#include "common.h"

/* Host-side veth ifindex -> endpoint. Written by the service on
 * CreateEndpoint; lets one loaded program serve every endpoint. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EBPFCNI_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct ebpfcni_endpoint_info);
} endpoint_ifidx SEC(".maps");

/* Endpoint id -> traffic counters. Per-CPU so the fast path never contends;
 * the service sums the CPUs when it reports. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, EBPFCNI_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct ebpfcni_endpoint_counters);
} endpoint_stats SEC(".maps");

#endif /* EBPFCNI_BPF_LIB_MAPS_H */
