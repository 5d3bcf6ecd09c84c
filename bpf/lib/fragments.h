/* IP fragments. Only a datagram's first fragment carries the L4 header,
 * so a later fragment has no ports of its own. When a first fragment
 * passes, its ports are recorded under the datagram's identity (family,
 * protocol, addresses, IP identification) on that interface and side; a
 * later fragment takes the recorded ports and is then judged like any
 * packet with them, normally by the conntrack entry the first fragment made
 * or matched. Without a record (the first fragment was dropped, not seen
 * yet, or evicted) the ports stay 0 ("unknown"): only a rule for any port
 * can pass it. Fragments arriving before their first one are therefore
 * judged without ports, as the datagram cannot be reassembled before it
 * arrives anyway. */
#ifndef EBPFCNI_BPF_LIB_FRAGMENTS_H
#define EBPFCNI_BPF_LIB_FRAGMENTS_H

#include "common.h"
#include "maps.h"
#include "parse.h"

static __always_inline void fragment_fill_key(struct ebpfcni_fragment_key *key,
					      const struct packet *pkt, __u32 ifindex,
					      __u8 scope)
{
	key->family = pkt->family;
	key->protocol = pkt->protocol;
	key->scope = scope;
	key->id = pkt->fragment_id;
	key->ifindex = ifindex;
	__builtin_memcpy(key->saddr, pkt->saddr, 16);
	__builtin_memcpy(key->daddr, pkt->daddr, 16);
}

/* Gives a later fragment the ports its datagram's first fragment passed
 * with, when recorded. Read-only (traces use it too). */
static __always_inline void fragment_resolve(struct packet *pkt, __u32 ifindex, __u8 scope)
{
	struct ebpfcni_fragment_key key = {};
	struct ebpfcni_fragment_value *ports;

	if (!(pkt->flags & PACKET_F_LATER_FRAGMENT))
		return;
	fragment_fill_key(&key, pkt, ifindex, scope);
	ports = bpf_map_lookup_elem(&fragments, &key);
	if (!ports)
		return;
	pkt->sport = ports->sport;
	pkt->dport = ports->dport;
	pkt->policy_port = ports->policy_port;
}

/* Records the ports of a first fragment that passed. */
static __always_inline void fragment_record(const struct packet *pkt, __u32 ifindex, __u8 scope)
{
	struct ebpfcni_fragment_key key = {};
	struct ebpfcni_fragment_value ports = {};

	if (!(pkt->flags & PACKET_F_FIRST_FRAGMENT))
		return;
	fragment_fill_key(&key, pkt, ifindex, scope);
	ports.sport = pkt->sport;
	ports.dport = pkt->dport;
	ports.policy_port = pkt->policy_port;
	bpf_map_update_elem(&fragments, &key, &ports, BPF_ANY);
}

#endif /* EBPFCNI_BPF_LIB_FRAGMENTS_H */
