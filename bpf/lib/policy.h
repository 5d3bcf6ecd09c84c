/* Per-endpoint identity policy.
 *
 * policy_maps[endpoint id] is the endpoint's whole policy: an inner hash map
 * of rules plus one configuration entry with the isolation flags. Lookup
 * order, first hit wins, most specific first:
 *   (peer, proto, port) -> (peer, proto, port range) -> (peer, proto, any)
 *   -> (peer, any, any) -> (any, proto, port) -> (any, proto, port range)
 *   -> (any, proto, any) -> (any, any, any)
 * Port ranges are aligned blocks of ports (see the ABI header) probed from
 * the smallest block up, so the narrowest range containing the port wins.
 * Shapes the policy does not have are skipped, so endpoints without ranges
 * pay nothing for them.
 * A direction that is not isolated passes without a rule lookup; an
 * isolated one with no hit is default deny. */
#ifndef EBPFCNI_BPF_LIB_POLICY_H
#define EBPFCNI_BPF_LIB_POLICY_H

#include "common.h"
#include "maps.h"
#include "drop_reasons.h"

/* The endpoint's policy map, NULL when it has none. */
static __always_inline void *policy_map_of(__u32 endpoint_id)
{
	return bpf_map_lookup_elem(&policy_maps, &endpoint_id);
}

/* EBPFCNI_POLICY_F_* of the endpoint (0 without a policy map). */
static __always_inline __u32 policy_flags(void *policy)
{
	struct ebpfcni_policy_key key = {};
	struct ebpfcni_policy_value *value;

	if (!policy)
		return 0;
	key.direction = EBPFCNI_POLICY_CONFIG;
	value = bpf_map_lookup_elem(policy, &key);
	return value ? value->rule_id_or_flags : 0;
}

/* Counts a hit on a rule entry in its own slot of the per-CPU array: the
 * lookup is inlined and the slot is this CPU's, so plain adds suffice. */
static __always_inline void policy_count_hit(const struct ebpfcni_policy_value *hit,
					     __u32 bytes)
{
	__u32 slot = hit->counter_slot;
	struct ebpfcni_packet_counter *counter;

	if (slot == EBPFCNI_POLICY_COUNTER_NONE)
		return;
	counter = bpf_map_lookup_elem(&policy_counters, &slot);
	if (counter) {
		counter->packets += 1;
		counter->bytes += bytes;
	}
}

/* Looks up one key shape (level) unless the policy has no key of that
 * shape; on a hit fills `hit_key` and returns the value. */
static __always_inline struct ebpfcni_policy_value *
policy_try(void *policy, __u32 flags, int level, __u32 peer, __u8 direction,
	   __u8 protocol, __be16 port, struct ebpfcni_policy_key *hit_key)
{
	if (!(flags & EBPFCNI_POLICY_F_SHAPE(direction, level)))
		return NULL;
	hit_key->peer_identity = peer;
	hit_key->direction = direction;
	hit_key->protocol = protocol;
	hit_key->dport = port;
	return bpf_map_lookup_elem(policy, hit_key);
}

/* Bit `plen` set for every block length of `direction`'s port ranges. */
static __always_inline __u32 policy_range_lengths(void *policy, __u8 direction)
{
	struct ebpfcni_policy_key key = {};
	struct ebpfcni_policy_value *value;

	key.direction = EBPFCNI_POLICY_CONFIG;
	key.dport = bpf_htons(direction);
	value = bpf_map_lookup_elem(policy, &key);
	return value ? value->rule_id_or_flags : 0;
}

/* Looks for a port-range block holding `port` (host order, non-zero),
 * smallest block first. */
static __always_inline struct ebpfcni_policy_value *
policy_try_range(void *policy, __u32 flags, int level, __u32 lengths,
		 __u32 peer, __u8 direction, __u8 protocol, __u16 port,
		 struct ebpfcni_policy_key *hit_key)
{
	struct ebpfcni_policy_value *value;
	int plen;

	if (!(flags & EBPFCNI_POLICY_F_SHAPE(direction, level)))
		return NULL;
	hit_key->peer_identity = peer;
	hit_key->protocol = protocol;
	for (plen = EBPFCNI_POLICY_PORT_BITS; plen >= 0; plen--) {
		if (!(lengths & (1u << plen)))
			continue;
		hit_key->direction = EBPFCNI_POLICY_RANGE_DIRECTION(direction, plen);
		hit_key->dport = bpf_htons(plen ? port & (__u16)(0xffff << (16 - plen)) : 0);
		value = bpf_map_lookup_elem(policy, hit_key);
		if (value)
			return value;
	}
	return NULL;
}

/* Decides a new flow in `direction` (EBPFCNI_POLICY_INGRESS/EGRESS) against
 * `peer`. Fills the verdict; returns true when the packet may pass.
 * Counts the hit entry unless `trace`. */
static __always_inline bool policy_decide(void *policy, __u32 flags, __u8 direction,
					  __u32 peer, __u8 protocol, __be16 port,
					  __u32 bytes, bool trace,
					  struct verdict *v)
{
	struct ebpfcni_policy_key key = {};
	struct ebpfcni_policy_value *hit = NULL;
	__u32 range_shapes = EBPFCNI_POLICY_F_SHAPE(direction, EBPFCNI_POLICY_SHAPE_PEER_RANGE) |
			     EBPFCNI_POLICY_F_SHAPE(direction, EBPFCNI_POLICY_SHAPE_ANY_RANGE);
	__u32 lengths = 0;
	__u16 host_port = bpf_ntohs(port);
	__u32 isolated_flag = direction == EBPFCNI_POLICY_INGRESS ?
				      EBPFCNI_POLICY_F_ISOLATED_INGRESS :
				      EBPFCNI_POLICY_F_ISOLATED_EGRESS;

	if (!policy || !(flags & isolated_flag)) {
		verdict_allow(v, EBPFCNI_VERDICT_ALLOWED_NOT_ISOLATED, 0);
		return true;
	}

	/* Port-specific keys only exist with a protocol and a known port. */
	if (port && (flags & range_shapes))
		lengths = policy_range_lengths(policy, direction);
	if (port)
		hit = policy_try(policy, flags, 0, peer, direction, protocol, port, &key);
	if (!hit && port)
		hit = policy_try_range(policy, flags, EBPFCNI_POLICY_SHAPE_PEER_RANGE,
				       lengths, peer, direction, protocol, host_port, &key);
	if (!hit)
		hit = policy_try(policy, flags, 1, peer, direction, protocol, 0, &key);
	if (!hit)
		hit = policy_try(policy, flags, 2, peer, direction, 0, 0, &key);
	if (!hit && port)
		hit = policy_try(policy, flags, 3, 0, direction, protocol, port, &key);
	if (!hit && port)
		hit = policy_try_range(policy, flags, EBPFCNI_POLICY_SHAPE_ANY_RANGE,
				       lengths, 0, direction, protocol, host_port, &key);
	if (!hit)
		hit = policy_try(policy, flags, 4, 0, direction, protocol, 0, &key);
	if (!hit)
		hit = policy_try(policy, flags, 5, 0, direction, 0, 0, &key);

	if (!hit) {
		verdict_drop(v, EBPFCNI_DROP_POLICY_DEFAULT_DENY, 0);
		return false;
	}
	if (!trace)
		policy_count_hit(hit, bytes);
	if (hit->action == EBPFCNI_ACTION_ALLOW) {
		verdict_allow(v, EBPFCNI_VERDICT_ALLOWED_POLICY, hit->rule_id_or_flags);
		return true;
	}
	/* Deny, and anything that is not a valid allow: fail closed. */
	verdict_drop(v, EBPFCNI_DROP_POLICY_DENY, hit->rule_id_or_flags);
	return false;
}

#endif /* EBPFCNI_BPF_LIB_POLICY_H */
