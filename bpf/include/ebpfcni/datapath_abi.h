/* Types and constants shared by the BPF programs (bpf/) and the datapath
 * service (C++). Only fixed-width types and plain C so that both clang
 * -target bpf (with vmlinux.h) and g++ compile it to the same layout; a
 * change here changes the layout of pinned maps, so the service recreates
 * maps whose key/value sizes no longer match (see bpf_objects.cc).
 *
 * Every map, key and value is described in docs/datapath.md. */
#ifndef EBPFCNI_DATAPATH_ABI_H
#define EBPFCNI_DATAPATH_ABI_H

#ifndef __bpf__
/* vmlinux.h already defines __u32/__u64 for BPF; userspace takes them from
 * the UAPI headers. */
#include <linux/types.h>
#endif

/* Upper bound on endpoints (pods) on one node; sizes every per-endpoint map. */
#define EBPFCNI_MAX_ENDPOINTS 65536

/* Endpoint id 0 is never assigned: it means "not a known endpoint". Ids
 * stay within 16 bits so they can later be packed next to other fields. */
#define EBPFCNI_ENDPOINT_ID_NONE 0
#define EBPFCNI_MAX_ENDPOINT_ID 0xffff

/* Reserved security identities (the numbers of services/identity, which are
 * Cilium's). Allocated identities start at 256. */
#define EBPFCNI_IDENTITY_UNKNOWN 0
#define EBPFCNI_IDENTITY_HOST 1
#define EBPFCNI_IDENTITY_WORLD 2 /* anything outside the cluster: the label's name */
#define EBPFCNI_IDENTITY_INIT 5  /* endpoint whose identity is not known yet */
/* What an ipcache miss gives, per family: a rule for ::/0 must not admit
 * IPv4 addresses outside the cluster, nor one for 0.0.0.0/0 IPv6 ones. */
#define EBPFCNI_IDENTITY_WORLD_IPV4 9
#define EBPFCNI_IDENTITY_WORLD_IPV6 10

/* Capacities. Inner policy maps and the ipcache are not preallocated, so
 * these bound memory without reserving it. */
/* Entries of one endpoint's policy map (rules, port-range blocks and the
 * configuration entries). Inner maps are created with exactly as many
 * entries as the policy needs (hash inner maps may differ in max_entries),
 * so this caps one endpoint's policy without costing memory up front:
 * enough for 500 NetworkPolicies of ~100 entries each in both directions. */
#define EBPFCNI_POLICY_MAX_ENTRIES (1u << 20)
#define EBPFCNI_IPCACHE_MAX_ENTRIES 262144
#define EBPFCNI_CT_MAX_ENTRIES 131072
#define EBPFCNI_FRAGMENTS_MAX_ENTRIES 8192
#define EBPFCNI_EVENTS_RINGBUF_BYTES (1 << 20)

/* ---- endpoint map: host-side veth ifindex (__u32) -> endpoint ---------- */
/* Two maps with the same value. endpoint_ifidx (HASH) holds every endpoint
 * and is what the service reads. endpoint_array (ARRAY indexed by ifindex)
 * mirrors the entries whose ifindex is below EBPFCNI_ENDPOINT_ARRAY_ENTRIES,
 * and the programs read it instead of the hash for those interfaces: an
 * array lookup is inlined (no helper call, no hashing), which saves ~30 ns
 * on every packet that is not of a tracked flow. A slot whose endpoint_id is
 * EBPFCNI_ENDPOINT_ID_NONE is empty. The kernel hands out interface indexes
 * cyclically up to INT_MAX (never reusing one until it wraps), so a node
 * with much pod churn passes the bound eventually; interfaces above it are
 * served by the hash. 2^18 slots of 16 bytes: 4 MiB. */
#define EBPFCNI_ENDPOINT_ARRAY_ENTRIES (1u << 18)
struct ebpfcni_endpoint_info {
	__u32 endpoint_id;
	/* Security identity of the pod; EBPFCNI_IDENTITY_UNKNOWN (0) means
	 * "not resolved yet" and is treated as the reserved init identity: all
	 * traffic of the endpoint is dropped (DROP_INIT_IDENTITY). */
	__u32 identity;
	__u32 flags; /* reserved, 0 */
	__u32 pad;
};

/* Value of the per-CPU endpoint counters map, an array indexed by endpoint
 * id (0..EBPFCNI_MAX_ENDPOINT_ID): the verifier inlines array lookups, so
 * counting costs no helper call. Directions are named from the pod's point
 * of view. */
struct ebpfcni_endpoint_counters {
	__u64 from_pod_packets;
	__u64 from_pod_bytes;
	__u64 to_pod_packets;
	__u64 to_pod_bytes;
};

/* ---- ipcache: LPM trie, IP prefix -> security identity ----------------- */
#define EBPFCNI_FAMILY_IPV4 4
#define EBPFCNI_FAMILY_IPV6 6
/* prefixlen counts the 32 bits of family+pad, then the IP prefix length:
 * family is matched exactly, so an IPv4 /0 never matches IPv6 packets.
 * IPv4 addresses sit in addr[0..3]. */
#define EBPFCNI_IPCACHE_PREFIX_BASE 32
struct ebpfcni_ipcache_key {
	__u32 prefixlen;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

struct ebpfcni_ipcache_value {
	__u32 identity;
	__u32 flags; /* reserved, 0 */
};

/* Whole addresses (/32 and /128: every pod, the node's own addresses) live
 * in a hash map consulted before the trie: one hash lookup instead of a
 * walk down the trie for the common case. The trie holds the shorter
 * prefixes (CIDR peers, other nodes' pod ranges). Value: as above.
 * IPv4 addresses sit in addr[0..3], the rest is 0. */
struct ebpfcni_ipcache_exact_key {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};
/* Whole IPv4 addresses have a hash of their own, keyed by the 4 address
 * bytes (as a __u32 in network order): hashing and comparing 4 bytes
 * instead of 20 takes ~8 ns off every new flow with an IPv4 peer.
 * ipcache_exact keeps IPv6 addresses (and, written by earlier versions,
 * IPv4 copies the service keeps current while their programs may still
 * run). */

/* ---- policy: outer ARRAY_OF_MAPS [endpoint id] -> inner HASH ------------ */
/* Direction of a rule, from the endpoint's point of view. */
#define EBPFCNI_POLICY_CONFIG 0 /* the reserved configuration key */
#define EBPFCNI_POLICY_INGRESS 1
#define EBPFCNI_POLICY_EGRESS 2

/* Port ranges [port, end_port] are stored as aligned power-of-two blocks of
 * ports, like IP prefixes: a block of prefix length `plen` (0..16) covers the
 * 2^(16 - plen) ports that share the top `plen` bits of dport. Such a key
 * carries EBPFCNI_POLICY_RANGE_DIRECTION(direction, plen) in `direction` and
 * the block's first port in dport; 1..65535 needs at most 30 blocks. A
 * packet's port is found by masking it to each prefix length in use, one
 * hash lookup each, longest (most specific) first. */
#define EBPFCNI_POLICY_PORT_BITS 16
#define EBPFCNI_POLICY_RANGE_DIRECTION(direction, plen) (((direction) << 5) | (plen))
#define EBPFCNI_POLICY_RANGE_DIRECTION_OF(byte) ((byte) >> 5)
#define EBPFCNI_POLICY_RANGE_PLEN_OF(byte) ((byte) & 0x1f)
/* Configuration entry of a direction's port-range blocks: key direction
 * EBPFCNI_POLICY_CONFIG, dport = htons(direction); value rule_id_or_flags =
 * bit `plen` set when blocks of that prefix length exist, so lookups skip
 * the lengths the policy does not use. */

/* Key of a rule. 0 in peer_identity/protocol/dport is the wildcard "any".
 * dport is the destination port (network order) for TCP/UDP/SCTP and the
 * ICMP type (network order, type in the low byte) for ICMP/ICMPv6. The key
 * with direction EBPFCNI_POLICY_CONFIG (all other fields 0) holds the
 * endpoint's policy flags, so one swap of the inner map replaces rules and
 * isolation together. */
struct ebpfcni_policy_key {
	__u32 peer_identity;
	__u8 direction;
	__u8 protocol;
	__be16 dport;
};

#define EBPFCNI_ACTION_ALLOW 1
#define EBPFCNI_ACTION_DENY 2

/* Flags of the configuration entry. */
#define EBPFCNI_POLICY_F_ISOLATED_INGRESS (1u << 0)
#define EBPFCNI_POLICY_F_ISOLATED_EGRESS (1u << 1)
/* Emit a policy-verdict event for every newly allowed flow. */
#define EBPFCNI_POLICY_F_VERDICT_EVENTS (1u << 2)
/* Which key shapes the policy has, per direction, so that lookups of
 * shapes without any entry are skipped (a default deny would otherwise
 * always cost all of them). Levels are named by number for layout
 * stability; the lookup order is 0, 6, 1, 2, 3, 7, 4, 5:
 * 0 (peer, proto, port), 6 (peer, proto, port range), 1 (peer, proto, any),
 * 2 (peer, any, any), 3 (any, proto, port), 7 (any, proto, port range),
 * 4 (any, proto, any), 5 (any, any, any). */
#define EBPFCNI_POLICY_SHAPE_LEVELS 8
#define EBPFCNI_POLICY_SHAPE_PEER_RANGE 6
#define EBPFCNI_POLICY_SHAPE_ANY_RANGE 7
#define EBPFCNI_POLICY_F_SHAPE(direction, level) \
	(1u << (8 + ((direction) - 1) * 8 + (level)))

/* action sits in the low byte of the first word on every little-endian
 * target (x86, arm64, bpfel), where earlier versions had `__u8 action`
 * followed by three bytes of padding: their maps read the same, with
 * counter_slot 0. */
struct ebpfcni_policy_value {
	__u32 action : 8; /* EBPFCNI_ACTION_*; 0 in the configuration entry */
	/* Index of the entry's packet/byte counters in policy_counters;
	 * EBPFCNI_POLICY_COUNTER_NONE: not counted (no slot was free). */
	__u32 counter_slot : 24;
	/* Rules: the rule id reported in events and counters.
	 * Configuration entry: EBPFCNI_POLICY_F_* flags. */
	__u32 rule_id_or_flags;
};

/* Per-entry counters: policy_counters is a per-CPU array, and every rule
 * entry of every endpoint's policy map owns one slot of it (the service
 * hands them out), so counting a hit is an inlined array access instead
 * of a hash lookup (~30 ns less per new flow). Slot 0 is never handed out. */
#define EBPFCNI_POLICY_COUNTER_NONE 0
/* Default number of slots: 16 bytes per slot per possible CPU (1 MiB per
 * CPU); the service's --policy_counter_slots changes it. */
#define EBPFCNI_POLICY_COUNTER_SLOTS_DEFAULT 65536
#define EBPFCNI_POLICY_COUNTER_SLOTS_MAX (1u << 24)

/* Key of the policy_stats map of earlier versions (a per-CPU hash by
 * endpoint and rule key), read once to carry its counts over. */
struct ebpfcni_policy_stats_key {
	__u32 endpoint_id;
	struct ebpfcni_policy_key rule;
};

struct ebpfcni_packet_counter {
	__u64 packets;
	__u64 bytes;
};

/* ---- conntrack: one LRU hash per family -------------------------------- */
/* An entry is owned by one host-side interface and one side of it: the
 * egress of the flow's source endpoint (its from-container program) or the
 * ingress of its destination endpoint (its to-container program). Keying by
 * the interface the packet is on (skb->ifindex, free to read) instead of the
 * endpoint id lets an established packet skip the endpoint lookup, and an
 * entry made on one interface can never match a packet on another. The
 * service flushes an interface's entries when its endpoint goes, before the
 * kernel can hand the index to a new veth that gets our programs. */
#define EBPFCNI_CT_SCOPE_EGRESS 1
#define EBPFCNI_CT_SCOPE_INGRESS 2

/* The original direction's tuple (as the first packet had it). For ICMP
 * echo, both ports carry the echo identifier so that replies match. IPv4
 * has its own 20-byte key: the hash and compare cost grows with key
 * length, and most traffic is IPv4. */
struct ebpfcni_ct4_key {
	__u8 saddr[4];
	__u8 daddr[4];
	__be16 sport;
	__be16 dport;
	__u32 ifindex; /* host-side interface the entry belongs to */
	__u8 protocol;
	__u8 scope; /* EBPFCNI_CT_SCOPE_* */
	__u8 pad[2];
};

struct ebpfcni_ct6_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u32 ifindex;
	__u8 protocol;
	__u8 scope;
	__u8 pad[2];
};

/* TCP flags seen on the flow, per direction where it matters. */
#define EBPFCNI_CT_SEEN_SYN (1u << 0)
#define EBPFCNI_CT_SEEN_REPLY (1u << 1) /* any packet in the reply direction */
#define EBPFCNI_CT_SEEN_FIN_ORIGINAL (1u << 2)
#define EBPFCNI_CT_SEEN_FIN_REPLY (1u << 3)
#define EBPFCNI_CT_SEEN_RST (1u << 4)

struct ebpfcni_ct_value {
	/* When the flow was last refreshed (at most once a second, or on a
	 * state change), in jiffies (bpf_jiffies64); in coarse CLOCK_MONOTONIC
	 * ns where the programs could not learn CONFIG_HZ. */
	__u64 last_seen;
	__u32 seen;        /* EBPFCNI_CT_SEEN_* */
	__u32 rule_id;     /* the rule that allowed the flow, 0 = not isolated */
	/* The endpoint that owned the interface when the flow was allowed:
	 * established packets are counted on it without an endpoint lookup. */
	__u32 endpoint_id;
	__u32 pad;
};

/* ---- drop reasons and verdicts (events, metrics, trace) ---------------- */
enum ebpfcni_drop_reason {
	EBPFCNI_DROP_NONE = 0,
	EBPFCNI_DROP_POLICY_DENY = 1,          /* a deny rule matched */
	EBPFCNI_DROP_POLICY_DEFAULT_DENY = 2,  /* isolated, no rule matched */
	EBPFCNI_DROP_INIT_IDENTITY = 3,        /* endpoint identity not set yet */
	EBPFCNI_DROP_TRUNCATED_L2 = 4,         /* shorter than an Ethernet header */
	EBPFCNI_DROP_UNSUPPORTED_L3 = 5,       /* neither IPv4, IPv6 nor ARP */
	EBPFCNI_DROP_TRUNCATED_L3 = 6,         /* IP header cut short */
	EBPFCNI_DROP_MALFORMED_L3 = 7,         /* bad version/IHL/lengths */
	EBPFCNI_DROP_TRUNCATED_L4 = 8,         /* L4 header (first fragment) cut short */
	EBPFCNI_DROP_IPV6_EXTENSION_LIMIT = 9, /* too many IPv6 extension headers */
	EBPFCNI_DROP_REASON_MAX = 10,
};

enum ebpfcni_verdict {
	EBPFCNI_VERDICT_NONE = 0,
	EBPFCNI_VERDICT_ALLOWED_CONNTRACK = 1,    /* established flow or reply */
	EBPFCNI_VERDICT_ALLOWED_POLICY = 2,       /* new flow, an allow rule matched */
	EBPFCNI_VERDICT_ALLOWED_NOT_ISOLATED = 3, /* new flow, direction not isolated */
	EBPFCNI_VERDICT_ALLOWED_NEIGHBOUR = 4,    /* ARP, IPv6 neighbour discovery, link-local MLD */
	EBPFCNI_VERDICT_DROPPED = 5,              /* see the drop reason */
	EBPFCNI_VERDICT_NOT_AN_ENDPOINT = 6,      /* interface is not ours: passed */
	EBPFCNI_VERDICT_MAX = 7,
};

/* ---- metrics: PERCPU_ARRAY of ebpfcni_packet_counter ------------------- */
/* Slots [0, EBPFCNI_VERDICT_MAX) count packets by verdict, then one slot
 * per drop reason, then events lost to the rate limit or a full ring. */
#define EBPFCNI_METRIC_VERDICT(v) (v)
#define EBPFCNI_METRIC_DROP(reason) ((__u32)EBPFCNI_VERDICT_MAX + (__u32)(reason))
#define EBPFCNI_METRIC_EVENTS_RATE_LIMITED EBPFCNI_METRIC_DROP(EBPFCNI_DROP_REASON_MAX)
#define EBPFCNI_METRIC_EVENTS_RING_FULL (EBPFCNI_METRIC_EVENTS_RATE_LIMITED + 1)
#define EBPFCNI_METRIC_MAX (EBPFCNI_METRIC_EVENTS_RING_FULL + 1)

/* ---- fragments: LRU hash, datagram -> the ports of its first fragment --- */
/* Only a datagram's first fragment carries the L4 header. When it passes,
 * its ports are recorded under the datagram's identity on that interface
 * and side (as conntrack scopes them), so the later fragments find the
 * conntrack entry the first one made or matched.
 * Datagrams are short-lived and rare; the LRU drops what is left. */
struct ebpfcni_fragment_key {
	__u8 family; /* EBPFCNI_FAMILY_* */
	__u8 protocol;
	__u8 scope; /* EBPFCNI_CT_SCOPE_* */
	__u8 pad;
	__u32 id;      /* IPv4: the 16-bit identification; IPv6: 32 bits */
	__u32 ifindex; /* host-side interface */
	__u8 saddr[16];
	__u8 daddr[16];
};

struct ebpfcni_fragment_value {
	__be16 sport;
	__be16 dport;
};

/* ---- events: ring buffer records --------------------------------------- */
#define EBPFCNI_EVENT_DROP 1
#define EBPFCNI_EVENT_POLICY_VERDICT 2

/* Direction of the packet as events report it (seen from the pod). */
#define EBPFCNI_DIR_FROM_POD 0
#define EBPFCNI_DIR_TO_POD 1

struct ebpfcni_event {
	__u64 timestamp_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u8 type;          /* EBPFCNI_EVENT_* */
	__u8 direction;     /* EBPFCNI_DIR_* */
	__u8 family;        /* EBPFCNI_FAMILY_* or 0 when not IP */
	__u8 protocol;
	__u32 endpoint_id;
	__u32 ifindex;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 reason;  /* enum ebpfcni_drop_reason (0 for verdict events) */
	__u32 rule_id; /* denying/allowing rule, 0 = default deny / not isolated */
	__be16 sport;
	__be16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 length; /* skb->len */
	__u32 pad;
};

/* Events per second per CPU that the rate limiter lets through (and the
 * burst it allows). */
#define EBPFCNI_EVENTS_PER_SECOND 1000

struct ebpfcni_event_bucket {
	__u64 tokens;
	__u64 last_refill_ns;
};

/* ---- tracing: BPF_PROG_TEST_RUN with these magic values in skb->cb[3..4]
 * runs the program without side effects (no conntrack entry, counter,
 * metric or event); the verdict comes back in the output context's cb:
 * cb[0] = enum ebpfcni_verdict, cb[1] = drop reason, cb[2] = rule id,
 * cb[3] = the peer's identity, cb[4] = the endpoint's identity. */
#define EBPFCNI_TRACE_MAGIC_0 0x74726163u /* "trac" */
#define EBPFCNI_TRACE_MAGIC_1 0x65656263u /* "eebc" */

#endif /* EBPFCNI_DATAPATH_ABI_H */
