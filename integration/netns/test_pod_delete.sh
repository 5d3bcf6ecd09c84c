#!/usr/bin/env bash
# CNI DEL removes everything ADD created: the veth pair, the host routes, the
# IPAM allocation (checked in the service and in its SQLite database), the
# datapath endpoint and the TC filters. DEL is idempotent and works with an
# empty CNI_NETNS (the runtime may have lost the namespace).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init delete 2

node_up
pod_add a
pod_add b
pod_add c
veth_a=$(pod_host_veth a)
veth_c=$(pod_host_veth c)
ip_a=$(pod_ip a 4)
[[ -n $veth_a && -n $ip_a ]] || fail "pod a not set up (veth '$veth_a', ip '$ip_a')"
check "host route to a exists" bash -c "ip -4 route show $ip_a | grep -q 'dev $veth_a'"
db=$EBPF_CNI_STATE_DIR/ipam.db
check "IPAM database exists at $db" test -f "$db"

# Rows the IPAM service persisted for a container (read straight from its
# SQLite store, not through the service, so a release that only happened in
# memory would be caught).
db_mentions() { sqlite3 "$db" "SELECT count(*) FROM allocations WHERE container_id = '$1'"; }
(($(db_mentions "$(pod_container_id a)") > 0)) || fail "pod a not in $db"

assert_gone() {
  local pod=$1 veth=$2 ip=$3
  check "$pod: host veth $veth removed" bash -c "! ip link show dev $veth >/dev/null 2>&1"
  check "$pod: no host route to $ip" bash -c "[[ -z \$(ip -4 route show $ip) ]]"
  expect_eq "$pod: IPAM allocations" 0 \
    "$(allocations_json | jq --arg cid "$(pod_container_id "$pod")" '[.allocations[] | select(.attachment.container_id == $cid)] | length')"
  expect_eq "$pod: rows in $db" 0 "$(db_mentions "$(pod_container_id "$pod")")"
  expect_eq "$pod: datapath endpoints" 0 \
    "$(endpoints_json | jq --arg cid "$(pod_container_id "$pod")" '[.endpoints[] | select(.key.container_id == $cid)] | length')"
  check "$pod: ip $ip not in pod netns" bash -c "! ip -n $(pod_netns_name "$pod") addr show 2>/dev/null | grep -q 'inet $ip/'"
}

log "DEL a (normal)"
pod_del a
assert_gone a "$veth_a" "$ip_a"
expect_eq "TC BPF filters on any test veth named like a" 0 "$(tc_bpf_filter_count "$veth_a" 2>/dev/null)"
check "pod a netns only has lo" bash -c "[[ \$(ip -n $(pod_netns_name a) -o link show | wc -l) -eq 1 ]]"

log "DEL a again (idempotent)"
pod_del a
assert_gone a "$veth_a" "$ip_a"

log "DEL with empty CNI_NETNS after the namespace is gone"
ip_c=$(pod_ip c 4)
ip netns delete "$(pod_netns_name c)"
out=$("$DEPLOY/cni-exec.sh" DEL "$(pod_container_id c)" "") || fail "DEL with empty netns failed: $out"
assert_gone c "$veth_c" "$ip_c"

log "DEL of a container never added"
out=$("$DEPLOY/cni-exec.sh" DEL "$TEST_ID-never" "") || fail "DEL of unknown container failed: $out"

log "pod b unaffected"
veth_b=$(pod_host_veth b)
expect_eq "b's filters" 2 "$(tc_bpf_filter_count "$veth_b")"
check "host -> b still works" bash -c "ping -c 1 -W 2 -q $(pod_ip b 4) >/dev/null"
expect_eq "allocations left (b)" 1 "$(allocation_count)"
expect_eq "endpoints left (b)" 1 "$(endpoint_count)"
pod_del b
expect_eq "allocations at the end" 0 "$(allocation_count)"
expect_eq "endpoints at the end" 0 "$(endpoint_count)"
expect_eq "routes to test veths" "" "$(host_routes_to_veths)"
expect_eq "test veths" "" "$(host_veths)"
