// SPDX-License-Identifier: GPL-2.0
/* TC programs attached to every pod's host-side veth. One loaded copy
 * serves all endpoints: the endpoint is found from skb->ifindex.
 *
 * from_container: clsact ingress of the host veth = packets the pod sends.
 * to_container:   clsact egress of the host veth  = packets for the pod.
 *
 * Today they only account traffic and pass it; policy (identity lookup,
 * policy maps, conntrack) will slot in between lookup and verdict. */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/endpoint.h"
#include "lib/counters.h"

static __always_inline int handle_packet(struct __sk_buff *skb,
					 enum ebpfcni_direction direction)
{
	__u32 endpoint_id = lookup_endpoint_id(skb);

	/* Interfaces we do not know are not ours to judge. */
	if (endpoint_id == EBPFCNI_ENDPOINT_ID_NONE)
		return TC_ACT_OK;

	count_packet(endpoint_id, direction, skb);
	return TC_ACT_OK;
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
