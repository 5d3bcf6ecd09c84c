/* IP fragments. Only a datagram's first fragment carries the L4 header,
 * so a later fragment has no ports of its own. A first fragment's ports
 * are recorded, whatever its verdict, under the datagram's identity (family,
 * protocol, addresses, IP identification) on that interface and side; a
 * later fragment is looked up in conntrack with the recorded ports, and
 * passes with the entry its first fragment made or matched. Without a
 * record (the first fragment was dropped, not seen yet, or evicted) or
 * without a live entry it is judged by policy with port 0 ("unknown"): only
 * a rule for any port can pass it. Fragments arriving before their first
 * one are therefore judged without ports, as the datagram cannot be
 * reassembled before it arrives anyway. */
#ifndef EBPFCNI_BPF_LIB_FRAGMENTS_H
#define EBPFCNI_BPF_LIB_FRAGMENTS_H

#include "common.h"
#include "maps.h"
#include "parse.h"
#include "conntrack.h"

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

/* Conntrack lookup of `pkt` (the arguments of ct_lookup); a later
 * fragment is looked up with the ports its datagram's first fragment
 * recorded on this interface and side, and is CT_NEW without a record.
 * `pkt` itself keeps ports 0: a later fragment that no entry passes is
 * judged by policy without ports, and the verifier explores that path
 * with the ports known to be 0, as before fragments were tracked. */
static __always_inline enum ct_result ct_lookup_packet(const struct packet *pkt, __u32 ifindex,
						       __u8 scope, bool trace, __u32 *endpoint_id)
{
	struct ebpfcni_fragment_key key = {};
	struct ebpfcni_fragment_value *ports;
	struct packet resolved;

	if (!(pkt->flags & PACKET_F_LATER_FRAGMENT))
		return ct_lookup(pkt, ifindex, scope, trace, endpoint_id);
	fragment_fill_key(&key, pkt, ifindex, scope);
	ports = bpf_map_lookup_elem(&fragments, &key);
	if (!ports)
		return CT_NEW;
	resolved = *pkt;
	resolved.sport = ports->sport;
	resolved.dport = ports->dport;
	return ct_lookup(&resolved, ifindex, scope, trace, endpoint_id);
}

/* Records the ports of a first fragment (pkt->more_fragments; callers
 * test that first, so whole packets pay no call); nothing for traces,
 * which change no state.
 *
 * A global function on purpose, called right after the parser: the
 * verifier checks it once on its own, and after the call it must assume
 * the function may have changed the packet record it was handed, so on
 * that path it stops carrying what it knew of `pkt` (family, protocol,
 * flags as constants per parse path) and those states merge. Verifying
 * the two programs processes ~110 000 and ~100 000 instructions this way;
 * with the record inlined at the ends of the passing paths it was ~445 000
 * and ~520 000, and ~175 000 and ~215 000 before fragments were tracked. */
__noinline int fragment_record(const struct packet *pkt, __u32 ifindex, __u32 scope, __u32 trace)
{
	struct ebpfcni_fragment_key key = {};
	struct ebpfcni_fragment_value ports = {};

	if (!pkt || !pkt->more_fragments || trace)
		return 0;
	fragment_fill_key(&key, pkt, ifindex, (__u8)scope);
	ports.sport = pkt->sport;
	ports.dport = pkt->dport;
	bpf_map_update_elem(&fragments, &key, &ports, BPF_ANY);
	return 0;
}

#endif /* EBPFCNI_BPF_LIB_FRAGMENTS_H */
