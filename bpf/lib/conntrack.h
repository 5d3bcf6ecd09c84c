/* Connection tracking: flows a policy allowed once pass without another
 * policy lookup, in both directions.
 *
 * An entry is keyed by the flow's original tuple, the endpoint that owns it
 * and a scope: "egress" entries are created by the source endpoint's
 * from-container program, "ingress" entries by the destination endpoint's
 * to-container program. Each program first looks up the packet's tuple in
 * its own scope (a later packet of a flow this side allowed), then the
 * reversed tuple in the opposite scope (a reply to a flow this endpoint
 * allowed the other way). Keying by endpoint means one pod's entries never
 * let traffic through another pod's programs. */
#ifndef EBPFCNI_BPF_LIB_CONNTRACK_H
#define EBPFCNI_BPF_LIB_CONNTRACK_H

#include "common.h"
#include "maps.h"
#include "parse.h"

/* Lifetimes, set by the service before load (rodata) so tests can shorten
 * them; the defaults are the production values. */
const volatile __u64 ct_lifetime_tcp_established_ns = 6 * 3600 * NSEC_PER_SEC;
const volatile __u64 ct_lifetime_tcp_syn_ns = 60 * NSEC_PER_SEC;
const volatile __u64 ct_lifetime_tcp_closing_ns = 10 * NSEC_PER_SEC;
const volatile __u64 ct_lifetime_other_ns = 60 * NSEC_PER_SEC;

/* last_seen is rewritten at most this often: one write per second per flow
 * instead of one per packet. */
#define CT_REFRESH_INTERVAL_NS NSEC_PER_SEC

enum ct_result {
	CT_NEW = 0,
	CT_ESTABLISHED = 1, /* packet in the flow's original direction */
	CT_REPLY = 2,
};

static __always_inline void ct_fill_key(struct ebpfcni_ct_key *key,
					const struct packet *pkt, __u8 scope,
					__u32 endpoint_id, bool reversed)
{
	key->protocol = pkt->protocol;
	key->family = pkt->family;
	key->scope = scope;
	key->endpoint_id = endpoint_id;
	if (!reversed) {
		__builtin_memcpy(key->saddr, pkt->saddr, 16);
		__builtin_memcpy(key->daddr, pkt->daddr, 16);
		key->sport = pkt->sport;
		key->dport = pkt->dport;
	} else {
		__builtin_memcpy(key->saddr, pkt->daddr, 16);
		__builtin_memcpy(key->daddr, pkt->saddr, 16);
		key->sport = pkt->dport;
		key->dport = pkt->sport;
	}
}

static __always_inline __u64 ct_lifetime(__u8 protocol, __u32 seen)
{
	if (protocol != IPPROTO_TCP_)
		return ct_lifetime_other_ns;
	if ((seen & EBPFCNI_CT_SEEN_RST) ||
	    ((seen & EBPFCNI_CT_SEEN_FIN_ORIGINAL) && (seen & EBPFCNI_CT_SEEN_FIN_REPLY)))
		return ct_lifetime_tcp_closing_ns;
	if (seen & EBPFCNI_CT_SEEN_REPLY)
		return ct_lifetime_tcp_established_ns;
	return ct_lifetime_tcp_syn_ns;
}

/* Flags this packet adds to an entry, seen from the entry's direction. */
static __always_inline __u32 ct_seen_flags(const struct packet *pkt, bool reply)
{
	__u32 seen = reply ? EBPFCNI_CT_SEEN_REPLY : 0;

	if (pkt->protocol != IPPROTO_TCP_)
		return seen;
	if (pkt->tcp_flags & TCP_FLAG_SYN)
		seen |= EBPFCNI_CT_SEEN_SYN;
	if (pkt->tcp_flags & TCP_FLAG_RST)
		seen |= EBPFCNI_CT_SEEN_RST;
	if (pkt->tcp_flags & TCP_FLAG_FIN)
		seen |= reply ? EBPFCNI_CT_SEEN_FIN_REPLY : EBPFCNI_CT_SEEN_FIN_ORIGINAL;
	return seen;
}

/* Looks up one key; an expired entry counts as absent. Updates seen flags
 * and last_seen on a hit (unless tracing). */
static __always_inline bool ct_hit(struct ebpfcni_ct_key *key,
				   const struct packet *pkt, bool reply,
				   __u64 now, bool trace)
{
	struct ebpfcni_ct_value *entry;
	__u32 seen;

	entry = bpf_map_lookup_elem(&conntrack, key);
	if (!entry)
		return false;
	seen = entry->seen;
	if (now - entry->last_seen_ns > ct_lifetime(pkt->protocol, seen)) {
		/* Left in place: it stays expired (nothing refreshes it), an
		 * allowed packet overwrites it in ct_create and the LRU reclaims
		 * it otherwise; deleting first would only add a map operation to
		 * the first packet of every new flow on a reused tuple. */
		return false;
	}
	/* A new SYN on a closed connection's tuple (port reuse) is a new
	 * connection: it must pass policy again. */
	if (!reply && pkt->protocol == IPPROTO_TCP_ &&
	    (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
	    (seen & (EBPFCNI_CT_SEEN_RST | EBPFCNI_CT_SEEN_FIN_ORIGINAL |
		     EBPFCNI_CT_SEEN_FIN_REPLY))) {
		if (!trace)
			bpf_map_delete_elem(&conntrack, key);
		return false;
	}
	if (trace)
		return true;
	seen |= ct_seen_flags(pkt, reply);
	if (seen != entry->seen) {
		/* A state change can shorten the lifetime: restart it now. */
		entry->seen = seen;
		entry->last_seen_ns = now;
	} else if (now - entry->last_seen_ns > CT_REFRESH_INTERVAL_NS) {
		entry->last_seen_ns = now;
	}
	return true;
}

/* `own_scope`: EBPFCNI_CT_SCOPE_EGRESS in from-container, _INGRESS in
 * to-container. */
static __always_inline enum ct_result ct_lookup(const struct packet *pkt,
						__u32 endpoint_id, __u8 own_scope,
						bool trace)
{
	struct ebpfcni_ct_key key = {};
	__u8 other_scope = own_scope == EBPFCNI_CT_SCOPE_EGRESS ?
				   EBPFCNI_CT_SCOPE_INGRESS :
				   EBPFCNI_CT_SCOPE_EGRESS;
	__u64 now = bpf_ktime_get_ns();

	ct_fill_key(&key, pkt, own_scope, endpoint_id, false);
	if (ct_hit(&key, pkt, false, now, trace))
		return CT_ESTABLISHED;
	ct_fill_key(&key, pkt, other_scope, endpoint_id, true);
	if (ct_hit(&key, pkt, true, now, trace))
		return CT_REPLY;
	return CT_NEW;
}

/* Is the ICMP error in `pkt` about a flow this endpoint has an entry for?
 * The quoted packet is one this side sent (or forwarded) in that flow, so
 * the lookup treats the reversed quote as the packet: the same two lookups
 * as for any packet find it in either direction. Nothing is updated: an
 * error does not keep a flow alive. */
static __always_inline bool ct_related(const struct packet *pkt, __u32 endpoint_id,
				       __u8 own_scope)
{
	struct packet quoted = {};

	if (!(pkt->flags & PACKET_F_ICMP_ERROR))
		return false;
	quoted.family = pkt->family;
	quoted.protocol = pkt->related_protocol;
	__builtin_memcpy(quoted.saddr, pkt->related_daddr, 16);
	__builtin_memcpy(quoted.daddr, pkt->related_saddr, 16);
	quoted.sport = pkt->related_dport;
	quoted.dport = pkt->related_sport;
	return ct_lookup(&quoted, endpoint_id, own_scope, /*trace=*/true) != CT_NEW;
}

/* Records a flow the policy just allowed. */
static __always_inline void ct_create(const struct packet *pkt,
				      __u32 endpoint_id, __u8 own_scope,
				      __u32 rule_id)
{
	struct ebpfcni_ct_key key = {};
	struct ebpfcni_ct_value entry = {};

	ct_fill_key(&key, pkt, own_scope, endpoint_id, false);
	entry.last_seen_ns = bpf_ktime_get_ns();
	entry.created_ns = entry.last_seen_ns;
	entry.seen = ct_seen_flags(pkt, false);
	entry.rule_id = rule_id;
	bpf_map_update_elem(&conntrack, &key, &entry, BPF_ANY);
}

#endif /* EBPFCNI_BPF_LIB_CONNTRACK_H */
