/* Drop and policy-verdict notifications through a ring buffer, rate
 * limited per CPU so a flood of drops cannot flood the service. */
#ifndef EBPFCNI_BPF_LIB_EVENTS_H
#define EBPFCNI_BPF_LIB_EVENTS_H

#include "common.h"
#include "maps.h"
#include "metrics.h"
#include "parse.h"
#include "drop_reasons.h"

#define EVENT_TOKEN_PERIOD_NS (NSEC_PER_SEC / EBPFCNI_EVENTS_PER_SECOND)

/* Takes a token from this CPU's bucket (refilled at
 * EBPFCNI_EVENTS_PER_SECOND, holding at most one second's worth). */
static __always_inline bool event_take_token(void)
{
	__u32 zero = 0;
	struct ebpfcni_event_bucket *bucket;
	__u64 now, elapsed;

	bucket = bpf_map_lookup_elem(&event_bucket, &zero);
	if (!bucket)
		return false;
	/* The tick-resolution clock: refills come in steps of a few ms,
	 * which averages out to the same rate and skips reading the clock
	 * source on every drop of a flood. */
	now = bpf_ktime_get_coarse_ns();
	elapsed = now - bucket->last_refill_ns;
	if (elapsed >= EVENT_TOKEN_PERIOD_NS) {
		__u64 tokens = bucket->tokens + elapsed / EVENT_TOKEN_PERIOD_NS;

		bucket->tokens = tokens > EBPFCNI_EVENTS_PER_SECOND ?
					 EBPFCNI_EVENTS_PER_SECOND : tokens;
		bucket->last_refill_ns = now;
	}
	if (bucket->tokens == 0)
		return false;
	bucket->tokens -= 1;
	return true;
}

static __always_inline void event_emit(const struct __sk_buff *skb, __u8 type,
				       enum ebpfcni_direction direction,
				       __u32 endpoint_id, __u32 endpoint_identity,
				       const struct packet *pkt,
				       const struct verdict *v)
{
	struct ebpfcni_event *event;

	if (!event_take_token()) {
		metrics_count(EBPFCNI_METRIC_EVENTS_RATE_LIMITED, 0);
		return;
	}
	event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
	if (!event) {
		metrics_count(EBPFCNI_METRIC_EVENTS_RING_FULL, 0);
		return;
	}
	event->timestamp_ns = bpf_ktime_get_ns();
	event->type = type;
	event->direction = direction;
	event->family = pkt->family;
	event->protocol = pkt->protocol;
	event->endpoint_id = endpoint_id;
	event->ifindex = skb->ifindex;
	if (direction == EBPFCNI_FROM_POD) {
		event->src_identity = endpoint_identity;
		event->dst_identity = v->peer_identity;
	} else {
		event->src_identity = v->peer_identity;
		event->dst_identity = endpoint_identity;
	}
	event->reason = v->reason;
	event->rule_id = v->rule_id;
	event->sport = pkt->sport;
	/* ICMP: the type in dport (what rules match), the echo id in sport. */
	event->dport = (pkt->protocol == IPPROTO_ICMP_ || pkt->protocol == IPPROTO_ICMPV6_) ?
			       pkt->policy_port : pkt->dport;
	__builtin_memcpy(event->saddr, pkt->saddr, 16);
	__builtin_memcpy(event->daddr, pkt->daddr, 16);
	event->length = skb->len;
	event->pad = 0;
	bpf_ringbuf_submit(event, 0);
}

#endif /* EBPFCNI_BPF_LIB_EVENTS_H */
