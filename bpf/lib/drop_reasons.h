/* The outcome of one packet: verdict, drop reason and the rule involved,
 * gathered while the program runs and acted on once at the end. The reason
 * codes themselves live in ebpfcni/datapath_abi.h (shared with the service,
 * which names them in events, metrics and traces). */
#ifndef EBPFCNI_BPF_LIB_DROP_REASONS_H
#define EBPFCNI_BPF_LIB_DROP_REASONS_H

#include "common.h"

struct verdict {
	__u32 verdict; /* enum ebpfcni_verdict */
	__u32 reason;  /* enum ebpfcni_drop_reason when dropped */
	__u32 rule_id; /* rule that decided, 0 = default deny / no rule */
	__u32 peer_identity;
	__u32 policy_flags; /* EBPFCNI_POLICY_F_* of the endpoint */
};

static __always_inline void verdict_drop(struct verdict *v, __u32 reason,
					 __u32 rule_id)
{
	v->verdict = EBPFCNI_VERDICT_DROPPED;
	v->reason = reason;
	v->rule_id = rule_id;
}

static __always_inline void verdict_allow(struct verdict *v, __u32 verdict,
					  __u32 rule_id)
{
	v->verdict = verdict;
	v->reason = EBPFCNI_DROP_NONE;
	v->rule_id = rule_id;
}

#endif /* EBPFCNI_BPF_LIB_DROP_REASONS_H */
