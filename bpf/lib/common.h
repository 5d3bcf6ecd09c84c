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
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#endif

/* Which way a packet crosses the host-side veth, seen from the pod. */
enum ebpfcni_direction {
	EBPFCNI_FROM_POD = EBPFCNI_DIR_FROM_POD, /* clsact ingress of the host veth */
	EBPFCNI_TO_POD = EBPFCNI_DIR_TO_POD,     /* clsact egress of the host veth */
};

#define NSEC_PER_SEC 1000000000ull

#endif /* EBPFCNI_BPF_LIB_COMMON_H */
