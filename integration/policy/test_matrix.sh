#!/usr/bin/env bash
# NetworkPolicy reachability matrix (issue 5). Namespaces x, y, z with pods
# a, b, c each (created through the real CNI binary; their labels come from
# the Pod/Namespace objects of the manifest directory the policy agent
# reads), every pod serving TCP and UDP on 80 and 81, plus the node and two
# non-pod addresses (ext1, ext2). For each scenario the policies are written
# to the manifest directory, the test waits until the agent reports the
# kernel in sync, probes every (source, destination, port, protocol) cell
# with real traffic, compares with the expected matrix written by hand from
# the Kubernetes documentation
# (https://kubernetes.io/docs/concepts/services-networking/network-policies/,
# "the docs" below) and runs `ebpf-cni-ctl policy verify`.
#
# The node is dual-stack: scenarios run with --ipv6 probe the matrix over
# IPv6 too, and ICMP echo in both families (the IPv6 slice: isolation,
# selectors, ports, replies, ipBlock with IPv6 CIDRs, neighbour discovery of
# isolated pods, drop events, an established connection across a policy
# change).
#
# Environment: NETPOL_SCENARIOS="1 5 9" runs only those scenario numbers
# (plus the baseline) when debugging one semantic.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
netpol_init matrix 51

node_up
netpol_cluster_up
EXT=10.98.$NETPOL_NUMBER     # ext1 = $EXT.2, ext2 = $EXT.3
EXT6=fd00:98:$NETPOL_NUMBER: # ext1 = $EXT6:2, ext2 = $EXT6:3
ANY_POD='[xyz]/*'

# Runs a scenario only when selected (NETPOL_SCENARIOS) — numbering stays
# stable either way.
SCN_SELECTED=${NETPOL_SCENARIOS:-}
selected() { [[ -z $SCN_SELECTED || " $SCN_SELECTED " == *" $((SCN_COUNT + 1)) "* ]]; }
skip_scenario() { SCN_COUNT=$((SCN_COUNT + 1)); }
run() { if selected; then run_scenario "$@"; else skip_scenario; fi; }

# ---------------------------------------------------------------------------
scenario "no policy: every pod reaches every pod and outside address (docs: pods are non-isolated by default)"
run --ipv6

if ! policy_agent_available; then
  scenarios_finish # fails the test if the baseline did
  echo "SKIP: baseline passed; the policy scenarios need the policy agent (policy.sock) and $CTL"
  exit 77
fi

# --- isolation and policyTypes --------------------------------------------
scenario "deny all ingress in x: podSelector {} and no ingress rules (docs: Default deny all ingress traffic)"
policy default-deny-ingress x <<'EOF'
podSelector: {}
EOF
expect deny '*' 'x/*'
trace_expect y/a x/b tcp 80 deny
trace_expect x/b y/a tcp 80 allow
# An ingress-isolated pod still resolves and is resolved (IPv6 NDP, ARP).
before_probe neighbour_discovery_check x/a 6
before_probe neighbour_discovery_check x/a 4
drop_event_expect y/a x/b tcp 80 DROP_REASON_POLICY_DEFAULT_DENY dst 6
drop_event_expect y/a x/b icmp 128 DROP_REASON_POLICY_DEFAULT_DENY dst 6
drop_event_expect y/a x/b udp 81 DROP_REASON_POLICY_DEFAULT_DENY dst 4
run --ipv6

scenario "allow all ingress in x: one empty rule matches every source (docs: Allow all ingress traffic)"
policy allow-all-ingress x <<'EOF'
podSelector: {}
ingress:
- {}
EOF
run

scenario "union: deny-all and allow-all select the same pods = allowed (docs: policies are additive)"
policy default-deny-ingress x <<'EOF'
podSelector: {}
EOF
policy allow-all-ingress x <<'EOF'
podSelector: {}
ingress:
- {}
EOF
run

scenario "ingress: [] (empty list) is no rule at all: isolated, nothing allowed (NetworkPolicySpec.ingress)"
policy empty-ingress-list x <<'EOF'
podSelector: {}
policyTypes: [Ingress]
ingress: []
EOF
expect deny '*' 'x/*'
run

scenario "deny all egress in x: policyTypes [Egress] with no egress rules (docs: Default deny all egress traffic)"
policy default-deny-egress x <<'EOF'
podSelector: {}
policyTypes: [Egress]
EOF
expect deny 'x/*' '*'
trace_expect x/a y/a udp 81 deny
before_probe neighbour_discovery_check x/b 6
drop_event_expect x/a y/a udp 81 DROP_REASON_POLICY_DEFAULT_DENY src 6
run --ipv6

scenario "deny all ingress and egress in x (docs: Default deny all ingress and all egress traffic)"
policy default-deny-all x <<'EOF'
podSelector: {}
policyTypes: [Ingress, Egress]
EOF
expect deny 'x/*' '*'
expect deny '*' 'x/*'
before_probe neighbour_discovery_check x/c 6
run --ipv6

scenario "allow all egress: one empty egress rule (docs: Allow all egress traffic)"
policy allow-all-egress x <<'EOF'
podSelector: {}
policyTypes: [Egress]
egress:
- {}
EOF
run

scenario "policyTypes omitted with an egress section: Ingress and Egress both apply (NetworkPolicySpec.policyTypes)"
policy a-egress-to-b x <<'EOF'
podSelector: {matchLabels: {pod: a}}
egress:
- to:
  - podSelector: {matchLabels: {pod: b}}
EOF
expect deny '*' 'x/a'
expect deny 'x/a' '*'
expect allow 'x/a' 'x/b'
run

# --- peers: podSelector, namespaceSelector, AND vs OR ---------------------
scenario "ingress from a podSelector peer: pods of the policy's own namespace only"
policy a-from-b x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
EOF
expect deny '*' 'x/a'
expect allow 'x/b' 'x/a'
trace_expect x/b x/a tcp 80 allow
trace_expect y/b x/a tcp 80 deny
run --ipv6

scenario "ingress from a namespaceSelector peer: every pod of the matching namespaces"
policy a-from-ns-y x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
EOF
expect deny '*' 'x/a'
expect allow 'y/*' 'x/a'
run

scenario "namespaceSelector and podSelector in ONE peer: AND (docs: Behavior of to and from selectors)"
policy a-from-y-and-b x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: b}}
EOF
expect deny '*' 'x/a'
expect allow 'y/b' 'x/a'
trace_expect y/b x/a udp 80 allow
trace_expect y/c x/a udp 80 deny
run --ipv6

scenario "namespaceSelector and podSelector as TWO peers: OR (docs: Behavior of to and from selectors)"
policy a-from-y-or-b x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  - podSelector: {matchLabels: {pod: b}}
EOF
expect deny '*' 'x/a'
expect allow 'y/*' 'x/a'
expect allow 'x/b' 'x/a'
run

scenario "empty namespaceSelector {}: every pod of every namespace, but no outside address"
policy a-from-all-namespaces x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {}
EOF
expect deny '*' 'x/a'
expect allow "$ANY_POD" 'x/a'
run

scenario "namespaceSelector {} AND podSelector: pods with that label in every namespace"
policy a-from-c-anywhere x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {}
    podSelector: {matchLabels: {pod: c}}
EOF
expect deny '*' 'x/a'
expect allow '[xyz]/c' 'x/a'
run

scenario "empty podSelector {} peer: every pod of the policy's namespace"
policy a-from-own-namespace x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {}
EOF
expect deny '*' 'x/a'
expect allow 'x/*' 'x/a'
run

# --- label selector operators ---------------------------------------------
scenario "matchExpressions In on a peer selector"
policy from-a-or-b x <<'EOF'
podSelector: {}
ingress:
- from:
  - podSelector:
      matchExpressions:
      - {key: pod, operator: In, values: [a, b]}
EOF
expect deny '*' 'x/*'
expect allow 'x/@(a|b)' 'x/*'
run

scenario "matchExpressions NotIn on the policy's podSelector"
policy isolate-not-a x <<'EOF'
podSelector:
  matchExpressions:
  - {key: pod, operator: NotIn, values: [a]}
EOF
expect deny '*' 'x/@(b|c)'
run

scenario "matchExpressions Exists on the policy's podSelector"
policy isolate-tiered x <<'EOF'
podSelector:
  matchExpressions:
  - {key: tier, operator: Exists}
EOF
expect deny '*' 'x/@(a|b)'
run

scenario "matchExpressions DoesNotExist on the policy's podSelector"
policy isolate-untiered x <<'EOF'
podSelector:
  matchExpressions:
  - {key: tier, operator: DoesNotExist}
EOF
expect deny '*' 'x/c'
run

scenario "matchLabels and matchExpressions together are ANDed"
policy isolate-web-a-or-c x <<'EOF'
podSelector:
  matchLabels: {tier: web}
  matchExpressions:
  - {key: pod, operator: In, values: [a, c]}
EOF
expect deny '*' 'x/a'
run

scenario "namespaceSelector with Exists: namespaces x and y have env, z has not"
policy a-from-env-namespaces x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: env, operator: Exists}
EOF
expect deny '*' 'x/a'
expect allow '[xy]/*' 'x/a'
run

scenario "namespaceSelector NotIn also matches namespaces without the key (y: env=dev, z: no env)"
policy a-from-not-prod x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: env, operator: NotIn, values: [prod]}
EOF
expect deny '*' 'x/a'
expect allow '[yz]/*' 'x/a'
run

# --- ports ------------------------------------------------------------------
scenario "numeric port, protocol omitted = TCP (NetworkPolicyPort.protocol)"
policy a-port-80 x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - port: 80
EOF
expect deny '*' 'x/a'
expect allow '*' 'x/a' 80/tcp
trace_expect y/c x/a tcp 80 allow
trace_expect y/c x/a udp 80 deny
run --ipv6

scenario "UDP port"
policy a-udp-81 x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - {protocol: UDP, port: 81}
EOF
expect deny '*' 'x/a'
expect allow '*' 'x/a' 81/udp
run --ipv6

scenario "protocol without port: every port of that protocol (NetworkPolicyPort.port)"
policy a-all-udp x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - protocol: UDP
EOF
expect deny '*' 'x/a'
expect allow '*' 'x/a' '*/udp'
run

scenario "endPort: port ranges (docs: Targeting a range of ports)"
policy a-port-ranges x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - {protocol: TCP, port: 79, endPort: 80}
  - {protocol: UDP, port: 81, endPort: 1000}
EOF
expect deny '*' 'x/a'
expect allow '*' 'x/a' 80/tcp
expect allow '*' 'x/a' 81/udp
run

scenario "named port on ingress: resolved against each selected pod's container ports (http = 80 on a, 81 on b, none on c)"
policy x-named-http x <<'EOF'
podSelector: {}
ingress:
- ports:
  - port: http
EOF
expect deny '*' 'x/*'
expect allow '*' 'x/a' 80/tcp
expect allow '*' 'x/b' 81/tcp
run

scenario "named ports on egress: resolved per destination pod; outside addresses have no named ports"
policy a-egress-named x <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- ports:
  - port: http
- ports:
  - {protocol: UDP, port: serve-81-udp}
EOF
expect deny 'x/a' '*'
expect allow 'x/a' '[xyz]/a' 80/tcp
expect allow 'x/a' '[xyz]/b' 81/tcp
expect allow 'x/a' "$ANY_POD" 81/udp
run

scenario "peers AND ports inside one rule, rules ORed"
policy a-two-rules x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
  ports:
  - port: 80
- from:
  - namespaceSelector: {matchLabels: {ns: z}}
  ports:
  - {protocol: UDP, port: 81}
EOF
expect deny '*' 'x/a'
expect allow 'x/b' 'x/a' 80/tcp
expect allow 'z/*' 'x/a' 81/udp
run

scenario "empty from: [] and ports: [] lists mean every source / every port (NetworkPolicyIngressRule)"
policy a-from-empty-list x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from: []
  ports:
  - port: 80
EOF
policy b-ports-empty-list x <<'EOF'
podSelector: {matchLabels: {pod: b}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: c}}
  ports: []
EOF
expect deny '*' 'x/a'
expect allow '*' 'x/a' 80/tcp
expect deny '*' 'x/b'
expect allow 'x/c' 'x/b'
run

# --- egress peers -------------------------------------------------------------
scenario "egress to a namespace"
policy a-egress-to-z x <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: z}}
EOF
expect deny 'x/a' '*'
expect allow 'x/a' 'z/*'
run

scenario "egress to a pod on one port"
policy a-egress-b-80 x <<'EOF'
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - podSelector: {matchLabels: {pod: b}}
  ports:
  - port: 80
EOF
expect deny 'x/a' '*'
expect allow 'x/a' 'x/b' 80/tcp
trace_expect x/a x/b tcp 80 allow
trace_expect x/a x/b tcp 81 deny
run

# --- several policies, independence, replies -----------------------------------
scenario "ingress and egress are independent: x/a isolated for ingress, y/b for egress"
policy a-from-y x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
EOF
policy b-no-egress y <<'EOF'
podSelector: {matchLabels: {pod: b}}
policyTypes: [Egress]
EOF
expect deny '*' 'x/a'
expect allow 'y/*' 'x/a'
expect deny 'y/b' '*'
run

scenario "union of two policies selecting the same pod (docs: policies are additive)"
policy a-from-b-tcp x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
  ports:
  - port: 80
EOF
policy a-from-y-udp x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - {protocol: UDP, port: 81}
EOF
expect deny '*' 'x/a'
expect allow 'x/b' 'x/a' 80/tcp
expect allow 'y/*' 'x/a' 81/udp
run

scenario "replies of allowed connections pass an isolated direction (docs: reply traffic is implicitly allowed)"
# x/b: egress isolated with no rule, ingress only from x/a -> x/a reaches
# x/b only if x/b's replies pass its egress. x/c: ingress isolated with no
# rule -> x/c still reaches everyone, its replies pass its ingress.
policy b-only-from-a x <<'EOF'
podSelector: {matchLabels: {pod: b}}
policyTypes: [Ingress, Egress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: a}}
EOF
policy c-no-ingress x <<'EOF'
podSelector: {matchLabels: {pod: c}}
EOF
expect deny '*' 'x/b'
expect allow 'x/a' 'x/b'
expect deny 'x/b' '*'
expect deny '*' 'x/c'
run --ipv6

scenario "a policy applies to pods of its own namespace only"
policy isolate-a y <<'EOF'
podSelector: {matchLabels: {pod: a}}
EOF
expect deny '*' 'y/a'
run

scenario "a policy selecting no pod isolates nothing"
policy selects-nobody x <<'EOF'
podSelector: {matchLabels: {pod: nobody}}
policyTypes: [Ingress, Egress]
EOF
run

# --- ipBlock ---------------------------------------------------------------------
scenario "egress ipBlock with except (docs: ipBlock)"
policy a-egress-ipblock x <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: $EXT.0/24, except: [$EXT.3/32]}
EOF
expect deny 'x/a' '*'
expect allow 'x/a' 'ext1'
trace_expect x/a ext1 tcp 80 allow
trace_expect x/a ext2 tcp 80 deny
run

scenario "ingress ipBlock with except"
policy x-from-ipblock x <<EOF
podSelector: {}
ingress:
- from:
  - ipBlock: {cidr: $EXT.0/24, except: [$EXT.3/32]}
EOF
expect deny '*' 'x/*'
expect allow 'ext1' 'x/*'
run

# The docs leave open whether ipBlock matches pod addresses ("cluster-external
# IPs"); ebpf-cni follows Cilium: pod addresses are matched by pod and
# namespace selectors only (docs/network-policy.md), so 0.0.0.0/0 here
# reaches outside addresses but no pod. Outside addresses are the world
# identity of their family (world-ipv4, world-ipv6), so 0.0.0.0/0 opens no
# IPv6 address and ::/0 no IPv4 one.
scenario "egress ipBlock 0.0.0.0/0 except one address: outside IPv4 addresses only"
policy a-egress-world x <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: 0.0.0.0/0, except: [$EXT.2/32]}
EOF
expect deny 'x/a' '*'
expect allow 'x/a' 'ext2' '*' 4
trace_expect x/a ext2 tcp 80 allow 4
trace_expect x/a ext2 tcp 80 deny 6
run --ipv6

scenario "egress ipBlock ::/0: outside IPv6 addresses only, no IPv4 one"
policy a-egress-world6 x <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: '::/0'}
EOF
expect deny 'x/a' '*'
expect allow 'x/a' 'ext[12]' '*' 6
trace_expect x/a ext1 tcp 80 allow 6
trace_expect x/a ext1 tcp 80 deny 4
run --ipv6

# ipBlock is the one family-aware peer: an IPv6 CIDR says nothing about the
# IPv4 addresses of the same hosts.
scenario "egress ipBlock with an IPv6 CIDR and except: ext1 over IPv6 only (docs: ipBlock)"
policy a-egress-ipblock6 x <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: '${EXT6}:/64', except: ['${EXT6}:3/128']}
EOF
expect deny 'x/a' '*'
expect allow 'x/a' 'ext1' '*' 6
trace_expect x/a ext1 tcp 80 allow 6
trace_expect x/a ext2 tcp 80 deny 6
trace_expect x/a ext1 tcp 80 deny 4
drop_event_expect x/a ext2 tcp 81 DROP_REASON_POLICY_DEFAULT_DENY src 6
run --ipv6

scenario "ingress ipBlock with IPv4 and IPv6 CIDRs, each with an except, on one port"
policy x-from-ipblock-dual x <<EOF
podSelector: {}
ingress:
- from:
  - ipBlock: {cidr: $EXT.0/24, except: [$EXT.3/32]}
  - ipBlock: {cidr: '${EXT6}:/64', except: ['${EXT6}:2/128']}
  ports:
  - {protocol: UDP, port: 80}
EOF
expect deny '*' 'x/*'
expect allow 'ext1' 'x/*' 80/udp 4
expect allow 'ext2' 'x/*' 80/udp 6
trace_expect ext2 x/a udp 80 allow 6
trace_expect ext1 x/a udp 80 deny 6
trace_expect ext1 x/a udp 80 allow 4
run --ipv6

scenario "egress ipBlock ${EXT6}:/120 without ports: every protocol, ICMPv6 included, to both addresses"
policy a-egress-ipblock6-all x <<EOF
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: '${EXT6}:/120'}
EOF
expect deny 'x/a' '*'
expect allow 'x/a' 'ext[12]' '*' 6
run --ipv6

# --- SCTP ------------------------------------------------------------------------
# The kernel here may lack SCTP (socket() refuses it): then SCTP is checked
# through the policy trace only (compiled state and the kernel programs via
# the datapath's Trace); the TCP/UDP cells show the rule opens nothing else.
scenario "SCTP port: allows SCTP/80 only"
policy a-sctp-80 x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - {protocol: SCTP, port: 80}
EOF
expect deny '*' 'x/a'
trace_expect x/b x/a sctp 80 allow
trace_expect x/b x/a sctp 81 deny
trace_expect x/b x/a tcp 80 deny
run

# --- changes ------------------------------------------------------------------------
# An established IPv6 connection survives a change of the policy that allowed
# it (the endpoint's rule set is replaced: an unrelated rule is added).
scenario "established connection, step 1: x/a accepts x/b on TCP 80; x/b opens a long-lived IPv6 connection"
policy a-from-b-80 x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
  ports:
  - {port: 80}
EOF
expect deny '*' 'x/a'
expect allow 'x/b' 'x/a' 80/tcp
before_probe held_connection_start x/b x/a 80 6
run --keep --ipv6

scenario "established connection, step 2: an unrelated rule is added to the same policy; the connection keeps exchanging"
policy a-from-b-80 x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
  ports:
  - {port: 80}
- from:
  - namespaceSelector: {matchLabels: {ns: z}}
  ports:
  - {protocol: UDP, port: 81}
EOF
expect deny '*' 'x/a'
expect allow 'x/b' 'x/a' 80/tcp
expect allow 'z/*' 'x/a' 81/udp
before_probe held_connection_check
run --ipv6

scenario "policy updated in place, step 1: x/a from x/b"
policy a-from-one-pod x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
EOF
expect deny '*' 'x/a'
expect allow 'x/b' 'x/a'
run --keep

scenario "policy updated in place, step 2: same policy now allows x/c instead"
policy a-from-one-pod x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: c}}
EOF
expect deny '*' 'x/a'
expect allow 'x/c' 'x/a'
run

scenario "namespace relabelled: z gains team=blue and its pods become allowed peers"
policy a-from-team-blue x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {team: blue}}
EOF
expect deny '*' 'x/a'
run --keep
if selected; then
  # Same policy; only the Namespace object changes.
  scenario "namespace relabelled, step 2: z has team=blue"
  policy a-from-team-blue x <<'EOF'
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {team: blue}}
EOF
  expect deny '*' 'x/a'
  expect allow 'z/*' 'x/a'
  before=$(policy_generation)
  netpol_namespace_labels() {
    case $1 in
      x) echo "ns: x, env: prod" ;;
      y) echo "ns: y, env: dev" ;;
      z) echo "ns: z, team: blue" ;;
    esac
  }
  netpol_write_cluster_manifest
  ctl status --wait --min_generation="$before" --timeout="${NETPOL_WAIT_S}s" >/dev/null 2>&1 || true
  run
else
  skip_scenario
fi

scenarios_finish
