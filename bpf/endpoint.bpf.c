// SPDX-License-Identifier: GPL-2.0
/* TC programs attached to every pod's host-side veth. One loaded copy
 * serves all endpoints: the endpoint is found from skb->ifindex.
 *
 * from_container: clsact ingress of the host veth = packets the pod sends,
 *                 judged by the pod's egress policy.
 * to_container:   clsact egress of the host veth  = packets for the pod,
 *                 judged by the pod's ingress policy.
 *
 * Order of decisions (docs/datapath.md has the full table):
 *   (a later fragment is looked up with the ports its datagram's first
 *   fragment passed with, lib/fragments.h)
 *   a packet of a flow this interface already allowed (conntrack; not
 *   a pure SYN, which opens a new one) -> pass, counted on the entry's
 *   endpoint, without the endpoint lookup;
 *   otherwise: not an endpoint -> pass; malformed -> drop; ARP / neighbour
 *   discovery -> pass; identity unknown (init) -> drop; an ICMP error about
 *   a tracked flow -> pass; otherwise policy for a new flow, and a
 *   conntrack entry when allowed. */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/endpoint.h"
#include "lib/counters.h"
#include "lib/parse.h"
#include "lib/ipcache.h"
#include "lib/drop_reasons.h"
#include "lib/policy.h"
#include "lib/conntrack.h"
#include "lib/fragments.h"
#include "lib/metrics.h"
#include "lib/events.h"
#include "lib/trace.h"

/* Everything after the conntrack fast path: a packet that is not part of a
 * flow this interface allowed, on an endpoint's interface. `parse_reason`
 * is what parse_packet() returned. */
static __always_inline void decide(struct __sk_buff *skb,
				   enum ebpfcni_direction direction,
				   const struct ebpfcni_endpoint_info *endpoint,
				   struct packet *pkt, int parse_reason,
				   bool trace, struct verdict *v)
{
	bool from_pod = direction == EBPFCNI_FROM_POD;
	__u8 own_scope = from_pod ? EBPFCNI_CT_SCOPE_EGRESS : EBPFCNI_CT_SCOPE_INGRESS;
	__u8 policy_direction = from_pod ? EBPFCNI_POLICY_EGRESS : EBPFCNI_POLICY_INGRESS;
	__u32 endpoint_id = endpoint->endpoint_id;
	__u32 ifindex = skb->ifindex;
	__u32 ct_endpoint;
	void *policy;

	if (parse_reason != EBPFCNI_DROP_NONE) {
		verdict_drop(v, parse_reason, 0);
		return;
	}
	if (pkt->flags & (PACKET_F_ARP | PACKET_F_NEIGHBOUR)) {
		verdict_allow(v, EBPFCNI_VERDICT_ALLOWED_NEIGHBOUR, 0);
		return;
	}
	if (endpoint->identity == EBPFCNI_IDENTITY_UNKNOWN) {
		verdict_drop(v, EBPFCNI_DROP_INIT_IDENTITY, 0);
		return;
	}

	/* A real packet's conntrack lookup already missed on the fast path
	 * (or was skipped: a pure SYN); a trace (which skips that path) looks
	 * now, without side effects. ICMP errors about tracked flows skip the
	 * policy too. */
	if ((trace && !ct_opens_connection(pkt) &&
	     ct_lookup_packet(pkt, ifindex, own_scope, true, &ct_endpoint) != CT_NEW) ||
	    ct_related(pkt, ifindex, own_scope)) {
		verdict_allow(v, EBPFCNI_VERDICT_ALLOWED_CONNTRACK, 0);
		return;
	}

	v->peer_identity = ipcache_lookup(pkt->family, from_pod ? pkt->daddr : pkt->saddr);
	policy = policy_map_of(endpoint_id);
	v->policy_flags = policy_flags(policy);
	if (policy_decide(policy, v->policy_flags, policy_direction,
			  v->peer_identity, pkt->protocol, pkt->policy_port,
			  skb->len, trace, v) &&
	    !trace)
		ct_create(pkt, ifindex, own_scope, endpoint_id, v->rule_id);
}

/* Established flows and replies: one conntrack lookup (two for a reply)
 * keyed by the interface, then counters and metrics, both inlined array
 * slots. True when the packet passes this way; never for a pure SYN,
 * which opens a connection and goes to policy. */
static __always_inline bool pass_tracked(struct __sk_buff *skb,
					 enum ebpfcni_direction direction,
					 const struct packet *pkt, int parse_reason)
{
	__u8 own_scope = direction == EBPFCNI_FROM_POD ? EBPFCNI_CT_SCOPE_EGRESS :
							 EBPFCNI_CT_SCOPE_INGRESS;
	__u32 endpoint_id;
	__u32 bytes;

	if (parse_reason != EBPFCNI_DROP_NONE ||
	    (pkt->flags & (PACKET_F_ARP | PACKET_F_NEIGHBOUR)) ||
	    ct_opens_connection(pkt))
		return false;
	if (ct_lookup_packet(pkt, skb->ifindex, own_scope, false, &endpoint_id) == CT_NEW)
		return false;
	bytes = skb->len;
	count_packet(endpoint_id, direction, bytes);
	metrics_count(EBPFCNI_METRIC_VERDICT(EBPFCNI_VERDICT_ALLOWED_CONNTRACK), bytes);
	return true;
}

static __always_inline int handle_packet(struct __sk_buff *skb,
					 enum ebpfcni_direction direction)
{
	bool trace = is_trace_run(skb);
	__u8 own_scope = direction == EBPFCNI_FROM_POD ? EBPFCNI_CT_SCOPE_EGRESS :
							 EBPFCNI_CT_SCOPE_INGRESS;
	struct ebpfcni_endpoint_info ep = {};
	const struct ebpfcni_endpoint_info *endpoint = &ep;
	struct packet pkt = {};
	struct verdict v = {};
	__u32 endpoint_identity;
	int parse_reason;

	/* Most packets are plain TCP/UDP: a short parse for them, the full
	 * one for everything else (same result either way). */
	parse_reason = parse_simple(skb, &pkt) ? EBPFCNI_DROP_NONE : parse_packet(skb, &pkt);
	/* A first fragment's ports, for its later fragments (a global
	 * function: see fragments.h). Recorded whatever its verdict: a later
	 * fragment passes only through the conntrack entry a passing first
	 * fragment made or matched. */
	if (pkt.more_fragments)
		fragment_record(&pkt, skb->ifindex, own_scope, trace);
	/* Traces take the slow path, which reports identities. */
	if (!trace && pass_tracked(skb, direction, &pkt, parse_reason))
		return EBPFCNI_TC_PASS;

	/* Interfaces we do not know are not ours to judge. */
	if (!lookup_endpoint(skb->ifindex, &ep)) {
		if (trace) {
			verdict_allow(&v, EBPFCNI_VERDICT_NOT_AN_ENDPOINT, 0);
			trace_report(skb, &v, 0);
		}
		return EBPFCNI_TC_PASS;
	}
	endpoint_identity = endpoint->identity;
	if (!trace)
		count_packet(endpoint->endpoint_id, direction, skb->len);

	decide(skb, direction, endpoint, &pkt, parse_reason, trace, &v);

	if (trace) {
		trace_report(skb, &v, endpoint_identity ? endpoint_identity :
							  EBPFCNI_IDENTITY_INIT);
		return v.verdict == EBPFCNI_VERDICT_DROPPED ? TC_ACT_SHOT : EBPFCNI_TC_PASS;
	}

	metrics_count(EBPFCNI_METRIC_VERDICT(v.verdict), skb->len);
	if (v.verdict == EBPFCNI_VERDICT_DROPPED) {
		if (v.reason < EBPFCNI_DROP_REASON_MAX)
			metrics_count(EBPFCNI_METRIC_DROP(v.reason), skb->len);
		event_emit(skb, EBPFCNI_EVENT_DROP, direction, endpoint->endpoint_id,
			   endpoint_identity ? endpoint_identity : EBPFCNI_IDENTITY_INIT,
			   &pkt, &v);
		return TC_ACT_SHOT;
	}
	if ((v.verdict == EBPFCNI_VERDICT_ALLOWED_POLICY ||
	     v.verdict == EBPFCNI_VERDICT_ALLOWED_NOT_ISOLATED) &&
	    (v.policy_flags & EBPFCNI_POLICY_F_VERDICT_EVENTS))
		event_emit(skb, EBPFCNI_EVENT_POLICY_VERDICT, direction,
			   endpoint->endpoint_id, endpoint_identity, &pkt, &v);
	return EBPFCNI_TC_PASS;
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	return handle_packet(skb, EBPFCNI_FROM_POD);
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	return handle_packet(skb, EBPFCNI_TO_POD);
}

char LICENSE[] SEC("license") = "GPL";
