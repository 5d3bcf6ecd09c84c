/* Connection tracking: flows a policy allowed once pass without another
 * policy lookup, in both directions.
 *
 * An entry is keyed by the flow's original tuple, the host-side interface
 * it belongs to (skb->ifindex) and a scope: "egress" entries are created by
 * the source endpoint's from-container program, "ingress" entries by the
 * destination endpoint's to-container program. Each program first looks up
 * the packet's tuple in its own scope (a later packet of a flow this side
 * allowed), then the reversed tuple in the opposite scope (a reply to a flow
 * this endpoint allowed the other way). Keying by interface means one pod's
 * entries never let traffic through another pod's interface, and it is what
 * lets an established packet pass before (without) the endpoint lookup: the
 * entry carries the endpoint id its packets are counted on. IPv4 and IPv6
 * have a table each (conntrack4, conntrack6). */
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

/* What a found entry means for the packet. */
enum ct_entry_state {
	CT_ENTRY_LIVE = 0,
	CT_ENTRY_EXPIRED = 1,
};

/* A pure TCP SYN (SYN without ACK) opens a connection: it is never a later
 * packet or a reply of a flow, so it goes to policy without a conntrack
 * lookup, and an allowed one (re)writes the flow's entry. That saves the
 * first packet of every new TCP connection a lookup (~65 ns in the
 * benchmark), and it means a SYN on the tuple of an earlier connection,
 * closed or not (a reused port, a retransmitted SYN), is judged by the
 * policy in force now. (A simultaneous open, where both sides send a SYN,
 * is two new flows that policy judges each.) */
static __always_inline bool ct_opens_connection(const struct packet *pkt)
{
	return pkt->protocol == IPPROTO_TCP_ &&
	       (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* The conntrack clock. Lifetimes are seconds to hours, so a tick (1-10 ms)
 * is plenty: jiffies, which the verifier inlines as one load, where a clock
 * source read costs ~35 ns per packet on a VM (bpf_ktime_get_ns) and even
 * the coarse ns clock is a helper call (~12 ns). CONFIG_HZ comes from the
 * kernel config (libbpf reads it at load); should that be unreadable, the
 * coarse ns clock stands in. The verifier knows the value and drops the
 * branch not taken. */
extern unsigned int CONFIG_HZ __kconfig __weak;

/* An entry idle this long (in clock units) is expired whatever its
 * lifetime: keeps the jiffies-to-ns comparison below from overflowing
 * (2^32 jiffies are 50 days even at HZ=1000; the longest lifetime is 6 h). */
#define CT_MAX_AGE_TICKS (1ull << 32)

static __always_inline __u64 ct_now(void)
{
	if (CONFIG_HZ)
		return bpf_jiffies64();
	return bpf_ktime_get_coarse_ns();
}

/* Is `age` (ct_now() units, signed: never negative with one clock) at least
 * `ns` nanoseconds? Compares age * 1e9 against ns * HZ: no division on the
 * packet path. */
static __always_inline bool ct_age_at_least(__s64 age, __u64 ns)
{
	if (!CONFIG_HZ)
		return age >= (__s64)ns;
	if (age >= (__s64)CT_MAX_AGE_TICKS)
		return true;
	if (age < 0)
		return false;
	return (__u64)age * NSEC_PER_SEC >= ns * CONFIG_HZ;
}

static __always_inline __u8 ct_other_scope(__u8 scope)
{
	return scope == EBPFCNI_CT_SCOPE_EGRESS ? EBPFCNI_CT_SCOPE_INGRESS :
						  EBPFCNI_CT_SCOPE_EGRESS;
}

/* The packet's tuple (`reversed`: as its reply would have it) into the
 * fields of a key of either family; `len` is the address length. */
static __always_inline void ct_fill_tuple(__u8 *saddr, __u8 *daddr, __be16 *sport,
					  __be16 *dport, const struct packet *pkt,
					  bool reversed, const __u32 len)
{
	__builtin_memcpy(saddr, reversed ? pkt->daddr : pkt->saddr, len);
	__builtin_memcpy(daddr, reversed ? pkt->saddr : pkt->daddr, len);
	*sport = reversed ? pkt->dport : pkt->sport;
	*dport = reversed ? pkt->sport : pkt->dport;
}

static __always_inline void ct4_fill_key(struct ebpfcni_ct4_key *key,
					 const struct packet *pkt, __u32 ifindex,
					 __u8 scope, bool reversed)
{
	key->protocol = pkt->protocol;
	key->scope = scope;
	key->ifindex = ifindex;
	ct_fill_tuple(key->saddr, key->daddr, &key->sport, &key->dport, pkt, reversed, 4);
}

static __always_inline void ct6_fill_key(struct ebpfcni_ct6_key *key,
					 const struct packet *pkt, __u32 ifindex,
					 __u8 scope, bool reversed)
{
	key->protocol = pkt->protocol;
	key->scope = scope;
	key->ifindex = ifindex;
	ct_fill_tuple(key->saddr, key->daddr, &key->sport, &key->dport, pkt, reversed, 16);
}

/* The entry for the packet's tuple in `scope` on `ifindex`, NULL if none.
 * One call site per table, so the verifier can inline each lookup. */
static __always_inline struct ebpfcni_ct_value *
ct_find(const struct packet *pkt, __u32 ifindex, __u8 scope, bool reversed)
{
	if (pkt->family == EBPFCNI_FAMILY_IPV4) {
		struct ebpfcni_ct4_key key = {};

		ct4_fill_key(&key, pkt, ifindex, scope, reversed);
		return bpf_map_lookup_elem(&conntrack4, &key);
	}
	struct ebpfcni_ct6_key key = {};

	ct6_fill_key(&key, pkt, ifindex, scope, reversed);
	return bpf_map_lookup_elem(&conntrack6, &key);
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

/* Judges a found entry; on a live one records the packet's flags and
 * refreshes last_seen (unless tracing). */
static __always_inline enum ct_entry_state
ct_check(struct ebpfcni_ct_value *entry, const struct packet *pkt, bool reply,
	 __u64 now, bool trace)
{
	__u32 seen = entry->seen;
	__s64 age = (__s64)(now - entry->last_seen);

	if (ct_age_at_least(age, ct_lifetime(pkt->protocol, seen))) {
		/* Left in place: it stays expired (nothing refreshes it), an
		 * allowed packet overwrites it in ct_create and the LRU reclaims
		 * it otherwise; deleting first would only add a map operation to
		 * the first packet of every new flow on a reused tuple. */
		return CT_ENTRY_EXPIRED;
	}
	if (trace)
		return CT_ENTRY_LIVE;
	seen |= ct_seen_flags(pkt, reply);
	if (seen != entry->seen) {
		/* A state change can shorten the lifetime: restart it now. */
		entry->seen = seen;
		entry->last_seen = now;
	} else if (ct_age_at_least(age, CT_REFRESH_INTERVAL_NS)) {
		entry->last_seen = now;
	}
	return CT_ENTRY_LIVE;
}

/* Is the packet part of a flow allowed on this interface? `own_scope`:
 * EBPFCNI_CT_SCOPE_EGRESS in from-container, _INGRESS in to-container. On a
 * hit, *endpoint_id is the endpoint the entry was made for. Callers do not
 * ask for a pure SYN (ct_opens_connection). */
static __always_inline enum ct_result ct_lookup(const struct packet *pkt,
						__u32 ifindex, __u8 own_scope,
						bool trace, __u32 *endpoint_id)
{
	struct ebpfcni_ct_value *entry;
	__u64 now = ct_now();

	entry = ct_find(pkt, ifindex, own_scope, false);
	if (entry && ct_check(entry, pkt, false, now, trace) == CT_ENTRY_LIVE) {
		*endpoint_id = entry->endpoint_id;
		return CT_ESTABLISHED;
	}
	entry = ct_find(pkt, ifindex, ct_other_scope(own_scope), true);
	if (entry && ct_check(entry, pkt, true, now, trace) == CT_ENTRY_LIVE) {
		*endpoint_id = entry->endpoint_id;
		return CT_REPLY;
	}
	return CT_NEW;
}

/* Is the ICMP error in `pkt` about a flow this interface has an entry for?
 * The quoted packet is one this side sent (or forwarded) in that flow, so
 * the lookup treats the reversed quote as the packet: the same two lookups
 * as for any packet find it in either direction. Nothing is updated: an
 * error does not keep a flow alive. */
static __always_inline bool ct_related(const struct packet *pkt, __u32 ifindex,
				       __u8 own_scope)
{
	struct packet quoted = {};
	__u32 ignored;

	if (!(pkt->flags & PACKET_F_ICMP_ERROR))
		return false;
	quoted.family = pkt->family;
	quoted.protocol = pkt->related_protocol;
	__builtin_memcpy(quoted.saddr, pkt->related_daddr, 16);
	__builtin_memcpy(quoted.daddr, pkt->related_saddr, 16);
	quoted.sport = pkt->related_dport;
	quoted.dport = pkt->related_sport;
	return ct_lookup(&quoted, ifindex, own_scope, /*trace=*/true, &ignored) != CT_NEW;
}

/* Records a flow the policy just allowed, replacing whatever entry its
 * tuple had (an expired one, or an earlier connection's on a SYN). */
static __always_inline void ct_create(const struct packet *pkt, __u32 ifindex,
				      __u8 own_scope, __u32 endpoint_id,
				      __u32 rule_id)
{
	struct ebpfcni_ct_value entry = {};

	entry.last_seen = ct_now();
	entry.seen = ct_seen_flags(pkt, false);
	entry.rule_id = rule_id;
	entry.endpoint_id = endpoint_id;
	if (pkt->family == EBPFCNI_FAMILY_IPV4) {
		struct ebpfcni_ct4_key key = {};

		ct4_fill_key(&key, pkt, ifindex, own_scope, false);
		bpf_map_update_elem(&conntrack4, &key, &entry, BPF_ANY);
		return;
	}
	struct ebpfcni_ct6_key key = {};

	ct6_fill_key(&key, pkt, ifindex, own_scope, false);
	bpf_map_update_elem(&conntrack6, &key, &entry, BPF_ANY);
}

#endif /* EBPFCNI_BPF_LIB_CONNTRACK_H */
