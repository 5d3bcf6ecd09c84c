#!/usr/bin/env bash
# CNI GC is scoped to its network and releases identity references. Two
# ebpf-cni networks share the node's IPAM, datapath and identity service;
# each network's GC (the installed binary, as libcni calls it) collects only
# its own attachments not in cni.dev/valid-attachments:
#   - IPAM records each allocation's network (service and SQLite);
#   - GC of network A with a valid list naming only A's live pod removes A's
#     stale attachment (endpoint, host veth, allocation) and nothing of B's;
#   - the identity reference of each collected endpoint is released (the
#     identity store's refs row goes; an identity left without references is
#     marked unreferenced, i.e. collectable);
#   - an allocation without a network name (made before names were recorded)
#     is kept by every scoped GC;
#   - then B's own GC collects B's attachment.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/multinet_lib.sh"
itest_init scopedgc 32

node_up
net_a=$EBPF_CNI_NETWORK_NAME
net_b=$net_a-b
second_network "$net_b" "${EBPF_CNI_VETH_PREFIX}b"
ipam_db=$EBPF_CNI_STATE_DIR/ipam.db
identity_db=$EBPF_CNI_STATE_DIR/identity.db

for pod in live stale other legacy; do pod_netns_create "$pod"; done
# A namespace per pod, so each pod's identity has its pod as only holder and
# a released reference leaves it collectable.
add() { net_cni "$1" ADD "$2" eth0 --args "K8S_POD_NAMESPACE=$TEST_ID-$2;K8S_POD_NAME=$2"; }
add "$net_a" live
add "$net_a" stale
add "$net_b" other
add "$net_a" legacy

db_network() { sqlite3 "$ipam_db" "SELECT DISTINCT network_name FROM allocations WHERE container_id = '$(pod_container_id "$1")'"; }
expect_eq "IPAM records live's network" "$net_a" "$(db_network live)"
expect_eq "IPAM records other's network" "$net_b" "$(db_network other)"
expect_eq "IPAM lists the network" "$net_b" \
  "$(allocations_json | jq -r --arg cid "$(pod_container_id other)" \
    '.allocations[] | select(.attachment.container_id == $cid) | .network_name')"
# As if allocated before network names were recorded (schema version 1).
sqlite3 "$ipam_db" "UPDATE allocations SET network_name = '' WHERE container_id = '$(pod_container_id legacy)'"

owner_refs() { sqlite3 "$identity_db" "SELECT count(*) FROM refs WHERE owner LIKE '%$(pod_container_id "$1")/eth0'"; }
identity_referenced() { sqlite3 "$identity_db" "SELECT unreferenced_since_ms IS NULL FROM identities WHERE id = $1"; }
endpoint_identity() {
  endpoints_json | jq -r --arg cid "$(pod_container_id "$1")" \
    '.endpoints[] | select(.key.container_id == $cid) | .identity'
}
has_endpoint() {
  endpoints_json | jq -e --arg cid "$(pod_container_id "$1")" 'any(.endpoints[]; .key.container_id == $cid)' >/dev/null
}
has_allocation() {
  allocations_json | jq -e --arg cid "$(pod_container_id "$1")" \
    'any(.allocations[]; .attachment.container_id == $cid)' >/dev/null
}
declare -A identity_of
for pod in live stale other legacy; do
  identity_of[$pod]=$(endpoint_identity "$pod")
  [[ ${identity_of[$pod]} =~ ^[0-9]+$ && ${identity_of[$pod]} -ge 256 ]] ||
    fail "$pod has no allocatable identity: '${identity_of[$pod]}'"
  expect_eq "$pod holds an identity reference" 1 "$(owner_refs "$pod")"
  expect_eq "$pod's identity is referenced" 1 "$(identity_referenced "${identity_of[$pod]}")"
done
[[ ${identity_of[stale]} != "${identity_of[live]}" ]] || fail "stale and live share an identity"
link_exists() { ip link show dev "$1" >/dev/null 2>&1; }
stale_veth=$(pod_host_veth stale)
other_veth=$(pod_host_veth other)

log "GC of $net_a, valid: live"
valid_a=$(jq -nc --arg live "$(pod_container_id live)" '[{containerID: $live, ifname: "eth0"}]')
out=$(cni_gc "$net_a" "$valid_a") || fail "GC of $net_a failed: $out"
check "stale's endpoint collected" not has_endpoint stale
check "stale's allocation released" not has_allocation stale
check "stale's host veth removed" not link_exists "$stale_veth"
expect_eq "stale's identity reference released" 0 "$(owner_refs stale)"
expect_eq "stale's identity is unreferenced (collectable)" 0 "$(identity_referenced "${identity_of[stale]}")"
for pod in live other legacy; do
  check "$pod's endpoint kept" has_endpoint "$pod"
  check "$pod's allocation kept" has_allocation "$pod"
  expect_eq "$pod's identity reference kept" 1 "$(owner_refs "$pod")"
done
check "other's host veth kept" link_exists "$other_veth"
check "live -> other still works" ping_ok live "$(attachment_ip other eth0 4)"
check "other -> legacy still works" ping_ok other "$(attachment_ip legacy eth0 4)"

log "GC of $net_a again: nothing more to collect"
out=$(cni_gc "$net_a" "$valid_a") || fail "second GC of $net_a failed: $out"
check "other kept" has_endpoint other
check "legacy kept" has_endpoint legacy

log "GC of $net_b, nothing valid: collects other only"
out=$(cni_gc "$net_b" '[]') || fail "GC of $net_b failed: $out"
check "other's endpoint collected" not has_endpoint other
check "other's allocation released" not has_allocation other
check "other's host veth removed" not link_exists "$other_veth"
expect_eq "other's identity reference released" 0 "$(owner_refs other)"
for pod in live legacy; do
  check "$pod's endpoint kept by $net_b's GC" has_endpoint "$pod"
  check "$pod's allocation kept by $net_b's GC" has_allocation "$pod"
done

log "DEL what is left"
net_cni "$net_a" DEL live eth0
net_cni "$net_a" DEL legacy eth0
net_cni "$net_a" DEL stale eth0 # after GC: must still succeed
net_cni "$net_b" DEL other eth0
expect_eq "identity references left" 0 \
  "$(sqlite3 "$identity_db" "SELECT count(*) FROM refs WHERE owner LIKE '%$TEST_ID-%'")"
expect_eq "allocations at the end" 0 "$(allocation_count)"
expect_eq "endpoints at the end" 0 "$(endpoint_count)"
expect_eq "test veths at the end" "" "$(host_veths)"
