/* Types and constants shared by the BPF programs (bpf/) and the datapath
 * service (C++). Only fixed-width types and plain C so that both clang
 * -target bpf (with vmlinux.h) and g++ compile it to the same layout; a
 * change here changes the layout of pinned maps, so the service recreates
 * maps whose key/value sizes no longer match (see bpf_objects.cc). */
#ifndef EBPFCNI_DATAPATH_ABI_H
#define EBPFCNI_DATAPATH_ABI_H

#ifndef __bpf__
/* vmlinux.h already defines __u32/__u64 for BPF; userspace takes them from
 * the UAPI headers. */
#include <linux/types.h>
#endif

/* Upper bound on endpoints (pods) on one node; sizes every per-endpoint map. */
#define EBPFCNI_MAX_ENDPOINTS 65536

/* Endpoint id 0 is never assigned: it means "not a known endpoint". Ids
 * stay within 16 bits so they can later be packed next to other fields. */
#define EBPFCNI_ENDPOINT_ID_NONE 0
#define EBPFCNI_MAX_ENDPOINT_ID 0xffff

/* Value of the ifindex -> endpoint map (key: __u32 host-side ifindex).
 * A struct rather than a bare id so later fields (identity, flags) can be
 * added without changing the key. */
struct ebpfcni_endpoint_info {
	__u32 endpoint_id;
	__u32 flags; /* reserved, 0 */
};

/* Value of the per-CPU endpoint counters map (key: __u32 endpoint id).
 * Directions are named from the pod's point of view. */
struct ebpfcni_endpoint_counters {
	__u64 from_pod_packets;
	__u64 from_pod_bytes;
	__u64 to_pod_packets;
	__u64 to_pod_bytes;
};

#endif /* EBPFCNI_DATAPATH_ABI_H */
