#!/usr/bin/env bash
# A pod with several ebpf-cni interfaces, as containerd/Multus create them:
# eth0 and net1 from the node's network (two CNI_IFNAMEs, one pool) and net2
# from a second ebpf-cni network with a pool (and IPAM daemon) of its own,
# sharing the node's datapath and identity service.
#   - every ADD succeeds; eth0 owns the default route, net1 reports no route
#     (its pool is eth0's), net2 a route to its pool; source rules send
#     traffic from net1/net2 addresses out of their own interface;
#   - real traffic to other pods over each interface (ICMP from and to each
#     address, TCP to net1), counted by that interface's own endpoint;
#   - with the policy agent (policySocket): every interface is an endpoint
#     of the same Pod object; a NetworkPolicy that admits only pod "peer"
#     into x is enforced on each of x's endpoints;
#   - CHECK passes for all three; DEL of eth0 leaves net1 and net2 working
#     and passing CHECK; DEL of the rest leaves nothing (links, rules,
#     endpoints, allocations in both IPAMs, host veths).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/multinet_lib.sh"
itest_init multiif 31

# Pod objects for the policy agent (ignored without one): all of x's
# interfaces belong to Pod x.
k8s_ns=$TEST_ID
{
  printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {ns: multinet}}\n' "$k8s_ns"
  for pod in x peer peerb; do
    printf -- '---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: {app: %s}}\n' \
      "$pod" "$k8s_ns" "$pod"
    printf -- 'spec: {containers: [{name: c, image: none}]}\n'
  done
} | multinet_manifest_write 00-pods.yaml

node_up
net_a=$EBPF_CNI_NETWORK_NAME
net_b=$net_a-b
start_second_ipam "$ROOT/ipam-b" 10.98.31.0/24 fd00:98:31::/64
second_network "$net_b" "${EBPF_CNI_VETH_PREFIX}b" "$ROOT/ipam-b/ipam.sock"

for pod in x peer peerb; do pod_netns_create "$pod"; done
log "ADD x: eth0 and net1 on $net_a, net2 on $net_b; peers on each network"
pod_args() { echo "K8S_POD_NAMESPACE=$k8s_ns;K8S_POD_NAME=$1"; }
net_cni "$net_a" ADD x eth0 --args "$(pod_args x)"
net_cni "$net_a" ADD x net1 --args "$(pod_args x)"
net_cni "$net_b" ADD x net2 --args "$(pod_args x)"
net_cni "$net_a" ADD peer eth0 --args "$(pod_args peer)"
net_cni "$net_b" ADD peerb eth0 --args "$(pod_args peerb)"

x_eth0=$(attachment_ip x eth0 4) x_net1=$(attachment_ip x net1 4) x_net2=$(attachment_ip x net2 4)
x_net1_6=$(attachment_ip x net1 6) x_net2_6=$(attachment_ip x net2 6)
peer=$(attachment_ip peer eth0 4) peerb=$(attachment_ip peerb eth0 4) peerb6=$(attachment_ip peerb eth0 6)
log "x: eth0 $x_eth0, net1 $x_net1, net2 $x_net2; peer $peer, peerb $peerb"
check "eth0 and net1 from the node's pool" bash -c "[[ $x_eth0 == 10.99.31.* && $x_net1 == 10.99.31.* ]]"
check "net2 from the second network's pool" bash -c "[[ $x_net2 == 10.98.31.* && $x_net2_6 == fd00:98:31:* ]]"
check "three distinct addresses" bash -c "[[ $x_eth0 != $x_net1 && $x_net1 != $x_net2 ]]"

expect_eq "eth0 routes (owns the default routes)" $'0.0.0.0/0 via 10.99.31.1\n::/0 via fd00:99:31::1' \
  "$(attachment_routes x eth0)"
expect_eq "net1 routes (its pool is eth0's)" "" "$(attachment_routes x net1)"
expect_eq "net2 routes (its own pool)" $'10.98.31.0/24 via 10.98.31.1\nfd00:98:31::/64 via fd00:98:31::1' \
  "$(attachment_routes x net2)"
# "gateway device" of each default route in the pod's main table.
default_routes() { pod_exec x ip "-$1" route show default | awk '{print $3, $5}'; }
expect_eq "x's IPv4 default routes" "10.99.31.1 eth0" "$(default_routes 4)"
expect_eq "x's IPv6 default routes" "fd00:99:31::1 eth0" "$(default_routes 6)"
check "source rule for net1" bash -c "ip -n $(pod_netns_name x) -4 rule show | grep -q 'from $x_net1 lookup'"
check "source rule for net2 (IPv6)" bash -c "ip -n $(pod_netns_name x) -6 rule show | grep -q 'from $x_net2_6 lookup'"
check "no source rule for eth0" bash -c "! ip -n $(pod_netns_name x) -4 rule show | grep -q 'from $x_eth0 '"

log "datapath: one endpoint per interface, each with the pod's identity"
expect_eq "x's endpoints" "eth0 net1 net2" \
  "$(endpoints_json | jq -r --arg cid "$(pod_container_id x)" \
    '[.endpoints[] | select(.key.container_id == $cid) | .key.interface_name] | sort | join(" ")')"
expect_eq "distinct host veths" 3 \
  "$(endpoints_json | jq --arg cid "$(pod_container_id x)" \
    '[.endpoints[] | select(.key.container_id == $cid) | .host_interface_name] | unique | length')"
expect_eq "attached with an identity" 3 \
  "$(endpoints_json | jq --arg cid "$(pod_container_id x)" \
    '[.endpoints[] | select(.key.container_id == $cid and .state == "ATTACHMENT_STATE_ATTACHED"
      and (.identity // 0) > 0)] | length')"

# traffic_over IFNAME what command...: the command succeeds and the
# interface's endpoint counted packets for it.
traffic_over() {
  local ifname=$1 what=$2 before after
  shift 2
  before=$(attachment_packets x "$ifname")
  check "$what" "$@"
  after=$(attachment_packets x "$ifname")
  ((after > before)) || fail "$what: endpoint x/$ifname counted no packets ($before -> $after)"
  ITEST_CHECKS=$((ITEST_CHECKS + 1))
}
ping_from() { pod_exec "$1" ping -c 2 -i 0.2 -W 2 -q -I "$2" "$3" >/dev/null 2>&1; }

log "traffic over each interface"
traffic_over eth0 "peer -> x eth0" ping_ok peer "$x_eth0"
traffic_over net1 "peer -> x net1 (reply leaves net1)" ping_ok peer "$x_net1"
traffic_over net2 "peerb -> x net2" ping_ok peerb "$x_net2"
traffic_over net2 "peerb -> x net2 (IPv6)" ping_ok peerb "$x_net2_6"
traffic_over eth0 "x (from eth0's address) -> peer" ping_from x "$x_eth0" "$peer"
traffic_over net1 "x (from net1's address) -> peer" ping_from x "$x_net1" "$peer"
traffic_over net2 "x -> peerb (pool route via net2)" ping_ok x "$peerb"
traffic_over net2 "x -> peerb (IPv6)" ping_ok x "$peerb6"
tcp_server_start x 8080
traffic_over net1 "TCP peer -> x net1" tcp_ok peer "$x_net1" 8080
traffic_over eth0 "TCP peer -> x eth0" tcp_ok peer "$x_eth0" 8080

if multinet_policy_agent_running; then
  log "NetworkPolicy: only peer may reach x, on every one of x's interfaces"
  before=$(multinet_policy_generation)
  multinet_manifest_write 10-policy.yaml <<POLICY
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x-from-peer, namespace: $k8s_ns}
spec:
  podSelector: {matchLabels: {app: x}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: peer}}}]
POLICY
  multinet_policy_wait "$before" 1
  expect_eq "x's endpoints with the same identity" 1 \
    "$(endpoints_json | jq --arg cid "$(pod_container_id x)" \
      '[.endpoints[] | select(.key.container_id == $cid) | .identity] | unique | length')"
  check "peer -> x eth0 allowed" ping_ok peer "$x_eth0"
  check "peer -> x net1 allowed" ping_ok peer "$x_net1"
  check "peer -> x net2 allowed" ping_ok peer "$x_net2"
  check "peerb -> x net2 denied" not ping_ok peerb "$x_net2"
  check "peerb -> x eth0 denied" not ping_ok peerb "$x_eth0"
  check "peerb -> x net1 denied" not ping_ok peerb "$x_net1"
  before=$(multinet_policy_generation)
  rm -f "$EBPF_CNI_MANIFEST_DIR/10-policy.yaml"
  multinet_policy_wait "$before" 0
  check "peerb -> x net2 allowed again" ping_ok peerb "$x_net2"
else
  log "no policy agent on this node: NetworkPolicy part skipped"
fi

log "CHECK each attachment"
net_cni "$net_a" CHECK x eth0
net_cni "$net_a" CHECK x net1
net_cni "$net_b" CHECK x net2
ITEST_CHECKS=$((ITEST_CHECKS + 3))

log "DEL eth0: net1 and net2 keep working"
net_cni "$net_a" DEL x eth0
check "eth0 gone" bash -c "! ip -n $(pod_netns_name x) link show eth0 >/dev/null 2>&1"
net_cni "$net_a" CHECK x net1
net_cni "$net_b" CHECK x net2
ITEST_CHECKS=$((ITEST_CHECKS + 2))
traffic_over net1 "peer -> x net1 after DEL eth0" ping_ok peer "$x_net1"
traffic_over net1 "x (from net1's address) -> peer after DEL eth0" ping_from x "$x_net1" "$peer"
traffic_over net2 "x -> peerb after DEL eth0" ping_ok x "$peerb"
traffic_over net2 "peerb -> x net2 after DEL eth0" ping_ok peerb "$x_net2"
expect_eq "x's endpoints after DEL eth0" "net1 net2" \
  "$(endpoints_json | jq -r --arg cid "$(pod_container_id x)" \
    '[.endpoints[] | select(.key.container_id == $cid) | .key.interface_name] | sort | join(" ")')"

log "DEL net1 and net2: nothing of x is left"
net_cni "$net_a" DEL x net1
net_cni "$net_b" DEL x net2
net_cni "$net_b" DEL x net2 # twice, as CRI does
expect_eq "x's netns links" "lo" "$(ip -n "$(pod_netns_name x)" -o link show | awk -F': ' '{print $2}' | cut -d@ -f1)"
expect_eq "x's source rules" "" \
  "$( { ip -n "$(pod_netns_name x)" -4 rule show; ip -n "$(pod_netns_name x)" -6 rule show; } |
    grep -E "from ($x_net1|$x_net2|$x_net1_6|$x_net2_6) " || true)"
expect_eq "x's endpoints" 0 \
  "$(endpoints_json | jq --arg cid "$(pod_container_id x)" '[.endpoints[] | select(.key.container_id == $cid)] | length')"
expect_eq "x's allocations ($net_a IPAM)" 0 \
  "$(allocations_json | jq --arg cid "$(pod_container_id x)" '[.allocations[] | select(.attachment.container_id == $cid)] | length')"
expect_eq "x's allocations ($net_b IPAM)" 0 \
  "$("$PROBE" allocations "$ROOT/ipam-b/ipam.sock" |
    jq --arg cid "$(pod_container_id x)" '[.allocations[] | select(.attachment.container_id == $cid)] | length')"
expect_eq "host routes to x's addresses" "" "$(ip -4 route show | grep -E "^($x_eth0|$x_net1|$x_net2) " || true)"
expect_eq "host veths left (peer, peerb)" 2 "$(host_veths | wc -l)"
check "peer and peerb unaffected" ping_ok peer "$(attachment_ip peerb eth0 4)"

net_cni "$net_a" DEL peer eth0
net_cni "$net_b" DEL peerb eth0
expect_eq "endpoints at the end" 0 "$(endpoint_count)"
expect_eq "test veths at the end" "" "$(host_veths)"
