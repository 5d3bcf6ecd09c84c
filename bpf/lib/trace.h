/* Tracing: the service's Trace RPC runs these programs on a synthetic
 * packet with BPF_PROG_TEST_RUN, whose input context can set skb->cb.
 * Magic values in cb[3..4] make the run free of side effects (no conntrack
 * entry, counter, metric or event), and the program writes its verdict back
 * into cb, which the kernel returns in the output context.
 *
 * A pod cannot set cb (it is kernel memory between qdisc layers). Should a
 * real packet ever arrive with both words equal to the magic, only the side
 * effects would be skipped; the verdict is computed the same way. */
#ifndef EBPFCNI_BPF_LIB_TRACE_H
#define EBPFCNI_BPF_LIB_TRACE_H

#include "common.h"
#include "drop_reasons.h"

static __always_inline bool is_trace_run(const struct __sk_buff *skb)
{
	return skb->cb[3] == EBPFCNI_TRACE_MAGIC_0 &&
	       skb->cb[4] == EBPFCNI_TRACE_MAGIC_1;
}

static __always_inline void trace_report(struct __sk_buff *skb,
					 const struct verdict *v,
					 __u32 endpoint_identity)
{
	skb->cb[0] = v->verdict;
	skb->cb[1] = v->reason;
	skb->cb[2] = v->rule_id;
	skb->cb[3] = v->peer_identity;
	skb->cb[4] = endpoint_identity;
}

#endif /* EBPFCNI_BPF_LIB_TRACE_H */
