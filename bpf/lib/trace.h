/* Tracing: the service's Trace RPC runs these programs on a synthetic
 * packet with BPF_PROG_TEST_RUN. Magic values in skb->cb[3..4] (only the
 * test-run context can put them there; TC never hands the program a cb
 * with both set by chance in practice, and even then only side effects
 * would be skipped, never a verdict changed) make the run free of side
 * effects, and the verdict is written back into cb for the service. */
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
