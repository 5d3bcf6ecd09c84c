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
	EBPFCNI_FROM_POD = 0, /* clsact ingress of the host veth */
	EBPFCNI_TO_POD = 1,   /* clsact egress of the host veth */
};

#endif /* EBPFCNI_BPF_LIB_COMMON_H */
