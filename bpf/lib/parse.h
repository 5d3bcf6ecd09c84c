/* Packet parsing: Ethernet, ARP, IPv4 (with options), IPv6 (with a bounded
 * walk over extension headers), and the L4 fields policy and conntrack need.
 *
 * Every header is reached through packet_header(): a pointer straight into
 * the linear packet data when the bytes are there (checked against
 * data_end; the common case, and cheap: fields are then read with loads of
 * their own width instead of being copied byte by byte), else a copy made by
 * bpf_skb_load_bytes, which checks offset and length against the whole skb,
 * non-linear parts included. Nothing here dereferences packet memory
 * without a check against data_end. A header that is cut short or
 * inconsistent ends parsing with a drop reason; the caller drops the
 * packet. */
#ifndef EBPFCNI_BPF_LIB_PARSE_H
#define EBPFCNI_BPF_LIB_PARSE_H

#include "common.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_DSTOPTS_ 60
#define IPPROTO_SCTP_ 132

/* IPv6 extension headers walked before giving up with
 * DROP_IPV6_EXTENSION_LIMIT. Real traffic carries zero to two. */
#define IPV6_MAX_EXTENSION_HEADERS 8

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* Packet classification flags. */
#define PACKET_F_ARP (1u << 0)
/* IPv6 link control that always passes: neighbour/router discovery
 * (ICMPv6 133..137) and multicast listener discovery from a link-scoped
 * source (icmp6_is_link_mld). */
#define PACKET_F_NEIGHBOUR (1u << 1)
/* A fragment other than the first: it carries no L4 header, so its ports
 * are 0 ("unknown"). Its conntrack lookup uses the ports its datagram's
 * first fragment recorded (lib/fragments.h); policy sees port 0, which only
 * any-port rules match. */
#define PACKET_F_LATER_FRAGMENT (1u << 2)
/* An ICMP error (destination unreachable, packet too big, time exceeded,
 * parameter problem) whose quoted packet was parsed into related_*: it may
 * pass as part of the flow it reports on. */
#define PACKET_F_ICMP_ERROR (1u << 3)

struct packet {
	__u8 family; /* EBPFCNI_FAMILY_*, 0 for ARP */
	__u8 protocol;
	__u8 tcp_flags;
	__u8 flags; /* PACKET_F_* */
	/* Conntrack tuple ports (ICMP echo: the identifier in both). */
	__be16 sport;
	__be16 dport;
	/* What policy matches on: the destination port, the ICMP type for
	 * ICMP, 0 when unknown (later fragments, other protocols). */
	__be16 policy_port;
	/* 1 for the first fragment of a datagram that has more: it carries
	 * the L4 header, and when it passes its ports are recorded for the
	 * later ones (lib/fragments.h). Computed without a branch and kept
	 * out of `flags` on purpose: the verifier then sees one state for
	 * whole packets and first fragments (an unknown 0 or 1 here) instead
	 * of exploring everything after the parser twice. */
	__u8 more_fragments;
	__u8 pad;
	/* Fragments: the datagram's identification (IPv4: 16 bits). */
	__u32 fragment_id;
	__u8 saddr[16];
	__u8 daddr[16];
	/* ICMP errors: the quoted packet's tuple, as that packet had it. */
	__u8 related_protocol;
	__u8 related_pad;
	__be16 related_sport;
	__be16 related_dport;
	__u16 related_pad2;
	__u8 related_saddr[16];
	__u8 related_daddr[16];
};

static __always_inline const void *packet_header(struct __sk_buff *skb, __u32 offset,
						 void *buffer, const __u32 len);

/* Multicast listener discovery (MLDv1 RFC 2710: query 130, report 131,
 * done 132; MLDv2 RFC 3810: report 143) is how a pod's kernel tells its
 * link which multicast groups it listens to, and how the node asks. RFC
 * 4890 (4.4.1) lists it with neighbour discovery as local traffic that
 * must not be dropped, and an isolated pod would otherwise log a drop for
 * every report. It passes only from a link-local (fe80::/10) or
 * unspecified source, as the RFCs require of it: the node never forwards
 * such a packet off the veth (link-local scope), so this lets nothing
 * reach another pod. */
static __always_inline bool icmp6_is_link_mld(__u8 type, const __u8 *saddr)
{
	const __u32 *words = (const __u32 *)saddr;

	if (type != 130 && type != 131 && type != 132 && type != 143)
		return false;
	if (saddr[0] == 0xfe && (saddr[1] & 0xc0) == 0x80)
		return true;
	return !(words[0] | words[1] | words[2] | words[3]);
}

/* Parses the packet an ICMP error quotes (its IP header and the first 8
 * bytes after it, which RFC 792/4443 guarantee) starting at `offset`. A
 * quote that cannot be parsed leaves the error unrelated: it is then judged
 * by policy like any other ICMP packet. */
static __always_inline void parse_icmp_quote(struct __sk_buff *skb, __u32 offset,
					     struct packet *pkt)
{
	__u8 l4_copy[8];
	const __u8 *l4;
	__u32 l4_offset;

	if (pkt->family == EBPFCNI_FAMILY_IPV4) {
		struct iphdr ip_copy;
		const struct iphdr *ip = packet_header(skb, offset, &ip_copy, sizeof(ip_copy));

		if (!ip || ip->version != 4 || ip->ihl < 5 ||
		    (bpf_ntohs(ip->frag_off) & 0x1fff))
			return;
		__builtin_memcpy(pkt->related_saddr, &ip->saddr, 4);
		__builtin_memcpy(pkt->related_daddr, &ip->daddr, 4);
		pkt->related_protocol = ip->protocol;
		l4_offset = offset + ip->ihl * 4;
	} else {
		struct ipv6hdr ip6_copy;
		const struct ipv6hdr *ip6 =
			packet_header(skb, offset, &ip6_copy, sizeof(ip6_copy));

		/* Quotes with extension headers stay unrelated. */
		if (!ip6 || ip6->version != 6)
			return;
		__builtin_memcpy(pkt->related_saddr, &ip6->saddr, 16);
		__builtin_memcpy(pkt->related_daddr, &ip6->daddr, 16);
		pkt->related_protocol = ip6->nexthdr;
		l4_offset = offset + sizeof(*ip6);
	}
	l4 = packet_header(skb, l4_offset, l4_copy, sizeof(l4_copy));
	if (!l4)
		return;
	switch (pkt->related_protocol) {
	case IPPROTO_TCP_:
	case IPPROTO_UDP_:
	case IPPROTO_SCTP_:
		pkt->related_sport = ((const __be16 *)l4)[0];
		pkt->related_dport = ((const __be16 *)l4)[1];
		break;
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_:
		/* A quoted echo request/reply: the id, as conntrack keys it. */
		if (l4[0] == 8 || l4[0] == 0 || l4[0] == 128 || l4[0] == 129) {
			pkt->related_sport = ((const __be16 *)l4)[2];
			pkt->related_dport = pkt->related_sport;
		}
		break;
	default:
		break;
	}
	pkt->flags |= PACKET_F_ICMP_ERROR;
}

/* Headers further in than this are read through the helper only; it keeps
 * the offset the verifier has to track small. */
#define PACKET_DIRECT_MAX_OFFSET 512

/* The `len` (a constant) bytes at `offset`: a pointer into the linear
 * packet data when they are there, else `buffer` filled by
 * bpf_skb_load_bytes; NULL when the packet is shorter. */
static __always_inline const void *packet_header(struct __sk_buff *skb, __u32 offset,
						 void *buffer, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (offset <= PACKET_DIRECT_MAX_OFFSET) {
		void *from = data + offset;

		if (from + len <= data_end)
			return from;
	}
	if (bpf_skb_load_bytes(skb, offset, buffer, len) < 0)
		return NULL;
	return buffer;
}

/* Parses ports/types at `offset` for `protocol`. Returns a drop reason. */
static __always_inline int parse_l4(struct __sk_buff *skb, __u32 offset,
				    struct packet *pkt)
{
	switch (pkt->protocol) {
	case IPPROTO_TCP_: {
		/* The fixed header; options are not needed. */
		struct tcphdr tcp_copy;
		const struct tcphdr *tcp =
			packet_header(skb, offset, &tcp_copy, sizeof(tcp_copy));

		if (!tcp)
			return EBPFCNI_DROP_TRUNCATED_L4;
		pkt->sport = tcp->source;
		pkt->dport = tcp->dest;
		pkt->tcp_flags = ((const __u8 *)tcp)[13];
		pkt->policy_port = pkt->dport;
		return EBPFCNI_DROP_NONE;
	}
	case IPPROTO_UDP_:
	case IPPROTO_SCTP_: {
		/* UDP header is 8 bytes, SCTP's common header 12; both start
		 * with the two ports. */
		__be16 ports_copy[6];
		const __be16 *ports;

		if (pkt->protocol == IPPROTO_UDP_)
			ports = packet_header(skb, offset, ports_copy, 8);
		else
			ports = packet_header(skb, offset, ports_copy, 12);
		if (!ports)
			return EBPFCNI_DROP_TRUNCATED_L4;
		pkt->sport = ports[0];
		pkt->dport = ports[1];
		pkt->policy_port = pkt->dport;
		return EBPFCNI_DROP_NONE;
	}
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_: {
		/* type, code, checksum, then 4 bytes that echo uses for
		 * identifier and sequence. Every ICMP message has all 8. */
		__u8 icmp_copy[8];
		const __u8 *icmp;
		__u8 type;
		bool v6 = pkt->protocol == IPPROTO_ICMPV6_;

		/* ICMP inside IPv6 (or ICMPv6 inside IPv4) is not ICMP for
		 * that family: no ports, policy by protocol only. */
		if (v6 != (pkt->family == EBPFCNI_FAMILY_IPV6))
			return EBPFCNI_DROP_NONE;
		icmp = packet_header(skb, offset, icmp_copy, sizeof(icmp_copy));
		if (!icmp)
			return EBPFCNI_DROP_TRUNCATED_L4;
		type = icmp[0];
		pkt->policy_port = bpf_htons(type);
		if ((!v6 && (type == 8 || type == 0)) ||
		    (v6 && (type == 128 || type == 129))) {
			/* Echo request/reply: the identifier makes replies
			 * find the request's conntrack entry. */
			pkt->sport = ((const __be16 *)icmp)[2];
			pkt->dport = pkt->sport;
		}
		if (v6 && ((type >= 133 && type <= 137) || icmp6_is_link_mld(type, pkt->saddr)))
			pkt->flags |= PACKET_F_NEIGHBOUR;
		if ((!v6 && (type == 3 || type == 11 || type == 12)) ||
		    (v6 && type >= 1 && type <= 4))
			parse_icmp_quote(skb, offset + sizeof(icmp_copy), pkt);
		return EBPFCNI_DROP_NONE;
	}
	default:
		/* Other protocols: no ports; rules with protocol and port 0
		 * (or any protocol) decide. */
		return EBPFCNI_DROP_NONE;
	}
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct packet *pkt)
{
	struct iphdr ip_copy;
	const struct iphdr *ip = packet_header(skb, ETH_HLEN, &ip_copy, sizeof(ip_copy));
	__u32 header_length;
	__u32 total_length;

	if (!ip)
		return EBPFCNI_DROP_TRUNCATED_L3;
	if (ip->version != 4 || ip->ihl < 5)
		return EBPFCNI_DROP_MALFORMED_L3;
	header_length = ip->ihl * 4;
	total_length = bpf_ntohs(ip->tot_len);
	if (total_length < header_length)
		return EBPFCNI_DROP_MALFORMED_L3;
	/* The frame may be longer (Ethernet padding), never shorter than the
	 * IP total length: the options or payload were cut off. */
	if (skb->len < ETH_HLEN + total_length)
		return EBPFCNI_DROP_TRUNCATED_L3;

	pkt->family = EBPFCNI_FAMILY_IPV4;
	pkt->protocol = ip->protocol;
	__builtin_memcpy(pkt->saddr, &ip->saddr, 4);
	__builtin_memcpy(pkt->daddr, &ip->daddr, 4);

	pkt->fragment_id = bpf_ntohs(ip->id);
	if (bpf_ntohs(ip->frag_off) & 0x1fff) {
		/* Fragment offset > 0: the L4 header is in the first one. */
		pkt->flags |= PACKET_F_LATER_FRAGMENT;
		return EBPFCNI_DROP_NONE;
	}
	pkt->more_fragments = (bpf_ntohs(ip->frag_off) >> 13) & 1; /* MF */
	/* IP options (IHL > 5) are skipped, not interpreted: the L4 header
	 * starts after them. */
	return parse_l4(skb, ETH_HLEN + header_length, pkt);
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct packet *pkt)
{
	struct ipv6hdr ip6_copy;
	const struct ipv6hdr *ip6 = packet_header(skb, ETH_HLEN, &ip6_copy, sizeof(ip6_copy));
	__u32 offset = ETH_HLEN + sizeof(struct ipv6hdr);
	__u8 next;
	int i;

	if (!ip6)
		return EBPFCNI_DROP_TRUNCATED_L3;
	if (ip6->version != 6)
		return EBPFCNI_DROP_MALFORMED_L3;
	/* Payload length 0 is a jumbogram (length in a hop-by-hop option);
	 * otherwise the frame must hold the whole payload. */
	if (ip6->payload_len &&
	    skb->len < offset + (__u32)bpf_ntohs(ip6->payload_len))
		return EBPFCNI_DROP_TRUNCATED_L3;

	pkt->family = EBPFCNI_FAMILY_IPV6;
	__builtin_memcpy(pkt->saddr, &ip6->saddr, 16);
	__builtin_memcpy(pkt->daddr, &ip6->daddr, 16);
	next = ip6->nexthdr;

	for (i = 0; i < IPV6_MAX_EXTENSION_HEADERS; i++) {
		__u8 ext_copy[8];
		const __u8 *ext;

		switch (next) {
		case IPPROTO_HOPOPTS_:
		case IPPROTO_ROUTING_:
		case IPPROTO_DSTOPTS_:
			/* next header, length in 8-byte units not counting
			 * the first 8 */
			ext = packet_header(skb, offset, ext_copy, 2);
			if (!ext)
				return EBPFCNI_DROP_TRUNCATED_L3;
			next = ext[0];
			offset += ((__u32)ext[1] + 1) * 8;
			break;
		case IPPROTO_AH_:
			/* length in 4-byte units, not counting the first 8 */
			ext = packet_header(skb, offset, ext_copy, 2);
			if (!ext)
				return EBPFCNI_DROP_TRUNCATED_L3;
			next = ext[0];
			offset += ((__u32)ext[1] + 2) * 4;
			break;
		case IPPROTO_FRAGMENT_: {
			__u16 fragment_offset;

			ext = packet_header(skb, offset, ext_copy, 8);
			if (!ext)
				return EBPFCNI_DROP_TRUNCATED_L3;
			next = ext[0];
			offset += 8;
			fragment_offset = ((__u16)ext[2] << 8 | ext[3]) & 0xfff8;
			pkt->fragment_id = (__u32)ext[4] << 24 | (__u32)ext[5] << 16 |
					   (__u32)ext[6] << 8 | ext[7];
			if (fragment_offset) {
				pkt->protocol = next;
				pkt->flags |= PACKET_F_LATER_FRAGMENT;
				return EBPFCNI_DROP_NONE;
			}
			/* Offset 0 with the M flag: a first fragment. Without
			 * it, an "atomic fragment" (RFC 6946): whole already. */
			pkt->more_fragments = ext[3] & 1;
			break;
		}
		default:
			pkt->protocol = next;
			return parse_l4(skb, offset, pkt);
		}
	}
	return EBPFCNI_DROP_IPV6_EXTENSION_LIMIT;
}

/* The common shape in a handful of loads: IPv4 without options and not a
 * fragment, or IPv6 without extension headers, carrying TCP or UDP,
 * all headers in the linear data. Applies the same checks as the full
 * parser and, on success, fills `pkt` exactly as parse_packet() would (only
 * then: a false return leaves `pkt` untouched for parse_packet()). Returns
 * false for anything else, including packets the full parser drops. */
static __always_inline bool parse_simple(struct __sk_buff *skb, struct packet *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	const struct ethhdr *eth = data;
	const struct iphdr *ip = (const void *)(eth + 1);
	const struct ipv6hdr *ip6 = (const void *)(eth + 1);
	const __be16 *ports;
	__u8 protocol;
	__u8 family;

	if ((void *)(eth + 1) > data_end)
		return false;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		__u32 total_length;

		/* Fragments (an offset or more to come) take the full parse. */
		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl != 5 ||
		    (bpf_ntohs(ip->frag_off) & 0x3fff))
			return false;
		total_length = bpf_ntohs(ip->tot_len);
		if (total_length < sizeof(*ip) || skb->len < ETH_HLEN + total_length)
			return false;
		family = EBPFCNI_FAMILY_IPV4;
		protocol = ip->protocol;
		ports = (const void *)(ip + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(ip6 + 1) > data_end || ip6->version != 6 ||
		    (ip6->payload_len &&
		     skb->len < ETH_HLEN + sizeof(*ip6) + (__u32)bpf_ntohs(ip6->payload_len)))
			return false;
		family = EBPFCNI_FAMILY_IPV6;
		protocol = ip6->nexthdr;
		ports = (const void *)(ip6 + 1);
	} else {
		return false;
	}
	/* The L4 header the full parser requires: TCP's 20 bytes, UDP's 8. */
	if ((protocol != IPPROTO_TCP_ && protocol != IPPROTO_UDP_) ||
	    (void *)ports + (protocol == IPPROTO_TCP_ ? 20 : 8) > data_end)
		return false;
	/* `family`, not the ethertype again: the verifier knows it per path,
	 * a second read of the packet it would not connect to the first. */
	pkt->family = family;
	if (family == EBPFCNI_FAMILY_IPV4) {
		__builtin_memcpy(pkt->saddr, &ip->saddr, 4);
		__builtin_memcpy(pkt->daddr, &ip->daddr, 4);
	} else {
		__builtin_memcpy(pkt->saddr, &ip6->saddr, 16);
		__builtin_memcpy(pkt->daddr, &ip6->daddr, 16);
	}
	pkt->protocol = protocol;
	pkt->sport = ports[0];
	pkt->dport = ports[1];
	pkt->policy_port = ports[1];
	if (protocol == IPPROTO_TCP_)
		pkt->tcp_flags = ((const __u8 *)ports)[13];
	return true;
}

/* Fills `pkt`; returns EBPFCNI_DROP_NONE or why the packet must be dropped. */
static __always_inline int parse_packet(struct __sk_buff *skb, struct packet *pkt)
{
	__be16 ethertype_copy;
	/* The last two bytes of the Ethernet header. */
	const __be16 *ethertype = packet_header(skb, 12, &ethertype_copy, 2);

	if (!ethertype)
		return EBPFCNI_DROP_TRUNCATED_L2;
	switch (bpf_ntohs(*ethertype)) {
	case ETH_P_IP:
		return parse_ipv4(skb, pkt);
	case ETH_P_IPV6:
		return parse_ipv6(skb, pkt);
	case ETH_P_ARP:
		pkt->flags |= PACKET_F_ARP;
		return EBPFCNI_DROP_NONE;
	default:
		/* Pods on a routed veth speak IPv4, IPv6 and ARP; anything else
		 * (VLAN tags, raw Ethernet protocols) could not be judged by
		 * identity and is dropped. */
		return EBPFCNI_DROP_UNSUPPORTED_L3;
	}
}

#endif /* EBPFCNI_BPF_LIB_PARSE_H */
