/* Includes and small definitions every BPF program of ebpf-cni needs. */
#ifndef EBPFCNI_BPF_LIB_COMMON_H
#define EBPFCNI_BPF_LIB_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ebpfcni/datapath_abi.h"

/* TC verdicts (from linux/pkt_cls.h, which vmlinux.h does not carry since
 * they are macros). */
#ifndef TC_ACT_OK
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#endif

/* What our programs return for a packet they let through: "no opinion,
 * go on" rather than "accept". Attached as a TCX link, TCX_NEXT (-1) lets
 * the programs and classic tc filters behind ours still run — the
 * bandwidth plugin's ingress redirect to its ifb device is one — where
 * TCX_PASS (0) would skip them. Attached as a clsact filter, TC_ACT_UNSPEC
 * at the end of the chain means the same as TC_ACT_OK: the packet goes on. */
#define EBPFCNI_TC_PASS TC_ACT_UNSPEC

/* Which way a packet crosses the host-side veth, seen from the pod. */
enum ebpfcni_direction {
	EBPFCNI_FROM_POD = EBPFCNI_DIR_FROM_POD, /* clsact ingress of the host veth */
	EBPFCNI_TO_POD = EBPFCNI_DIR_TO_POD,     /* clsact egress of the host veth */
};

#define NSEC_PER_SEC 1000000000ull

#endif /* EBPFCNI_BPF_LIB_COMMON_H */
