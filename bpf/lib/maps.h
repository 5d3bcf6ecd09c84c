/* Every BPF map of the datapath, in one place so that the programs and the
 * service agree on names (the service pins each map under --bpf_dir by its
 * name and reuses the pin on restart). Map names are at most 15 chars.
 * Layouts: bpf/include/ebpfcni/datapath_abi.h; docs/datapath.md explains
 * each map. */
#ifndef EBPFCNI_BPF_LIB_MAPS_H
#define EBPFCNI_BPF_LIB_MAPS_H

#include "common.h"

/* Host-side veth ifindex -> endpoint (id, identity). Written by the service
 * on CreateEndpoint/SetEndpointIdentity; lets one loaded program serve every
 * endpoint. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EBPFCNI_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct ebpfcni_endpoint_info);
} endpoint_ifidx SEC(".maps");

/* Host ifindex below EBPFCNI_ENDPOINT_ARRAY_ENTRIES -> endpoint: the
 * programs' copy of endpoint_ifidx for those interfaces (see the ABI). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	/* The service reads it through mmap at start to check it against the
	 * hash: 4 MiB in one memcmp instead of a 262144-element batch read. */
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, EBPFCNI_ENDPOINT_ARRAY_ENTRIES);
	__type(key, __u32);
	__type(value, struct ebpfcni_endpoint_info);
} endpoint_array SEC(".maps");

/* Endpoint id -> traffic counters. Per-CPU so the fast path never contends;
 * the service sums the CPUs when it reports. An array (ids are 16 bits):
 * its lookup is inlined, and a slot always exists, so the first packet of
 * an endpoint needs no insert. The service zeroes a slot when its id is
 * (re)assigned or freed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EBPFCNI_MAX_ENDPOINT_ID + 1);
	__type(key, __u32);
	__type(value, struct ebpfcni_endpoint_counters);
} endpoint_stats SEC(".maps");

/* Whole IPv4 address (4 bytes, network order) -> security identity:
 * looked up first for IPv4 peers. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, EBPFCNI_IPCACHE_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct ebpfcni_ipcache_value);
} ipcache4 SEC(".maps");

/* Whole IPv6 address (/128) -> security identity: looked up first for IPv6
 * peers. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, EBPFCNI_IPCACHE_MAX_ENTRIES);
	__type(key, struct ebpfcni_ipcache_exact_key);
	__type(value, struct ebpfcni_ipcache_value);
} ipcache_exact SEC(".maps");

/* Shorter IP prefixes -> security identity, when ipcache_exact has no
 * entry. No match = reserved world identity. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, EBPFCNI_IPCACHE_MAX_ENTRIES);
	__type(key, struct ebpfcni_ipcache_key);
	__type(value, struct ebpfcni_ipcache_value);
} ipcache SEC(".maps");

/* One endpoint's complete policy: rules plus the configuration entry. The
 * service builds a new one aside and swaps it into policy_maps in a single
 * update, so a packet sees either the old or the new policy, never a mix. */
struct policy_inner_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	/* Only the template: the service sizes each endpoint's inner map to
	 * its policy (at most EBPFCNI_POLICY_MAX_ENTRIES); the kernel does not
	 * compare max_entries of hash inner maps, and a small template keeps
	 * libbpf from allocating a big bucket array at load. */
	__uint(max_entries, 1);
	/* Sizes rather than __type(): clang emits the value struct only as a
	 * forward declaration here, which libbpf cannot size. The service
	 * creates inner maps without BTF, so nothing is lost. */
	__uint(key_size, sizeof(struct ebpfcni_policy_key));
	__uint(value_size, sizeof(struct ebpfcni_policy_value));
};

/* Endpoint id -> that endpoint's policy map. An empty slot = no policy =
 * not isolated in either direction. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, EBPFCNI_MAX_ENDPOINT_ID + 1);
	__type(key, __u32);
	__array(values, struct policy_inner_map);
} policy_maps SEC(".maps");

/* Counter slot (the policy value's counter_slot) -> packets/bytes that hit
 * the rule entry. max_entries is set by the service at load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EBPFCNI_POLICY_COUNTER_SLOTS_DEFAULT);
	__type(key, __u32);
	__type(value, struct ebpfcni_packet_counter);
} policy_counters SEC(".maps");

/* Connection tracking, one table per family (the IPv4 key is less than
 * half the IPv6 one, and key length is what a lookup pays for); LRU so a
 * full table evicts the least recently used flow instead of refusing new
 * ones. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EBPFCNI_CT_MAX_ENTRIES);
	__type(key, struct ebpfcni_ct4_key);
	__type(value, struct ebpfcni_ct_value);
} conntrack4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EBPFCNI_CT_MAX_ENTRIES);
	__type(key, struct ebpfcni_ct6_key);
	__type(value, struct ebpfcni_ct_value);
} conntrack6 SEC(".maps");

/* Datagram -> ports of its first fragment, for the later ones. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EBPFCNI_FRAGMENTS_MAX_ENTRIES);
	__type(key, struct ebpfcni_fragment_key);
	__type(value, struct ebpfcni_fragment_value);
} fragments SEC(".maps");

/* Drop and policy-verdict notifications for the service's event stream. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EBPFCNI_EVENTS_RINGBUF_BYTES);
} events SEC(".maps");

/* Per-CPU token bucket that rate-limits events. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ebpfcni_event_bucket);
} event_bucket SEC(".maps");

/* Packets/bytes by verdict and by drop reason (EBPFCNI_METRIC_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EBPFCNI_METRIC_MAX);
	__type(key, __u32);
	__type(value, struct ebpfcni_packet_counter);
} metrics SEC(".maps");

#endif /* EBPFCNI_BPF_LIB_MAPS_H */
