#!/usr/bin/env bash
# The datapath service is killed (SIGKILL) and restarted through up.sh, then
# restarted gracefully (SIGTERM): pods keep their traffic throughout (the TC
# programs and pinned maps live in the kernel), and the new process re-adopts
# every endpoint and attachment instead of adding duplicate filters or
# losing counters.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init dprestart 5

node_up
pod_add a
pod_add b
ip_a=$(pod_ip a 4)
ip_b=$(pod_ip b 4)
check "a -> b before" ping_ok a "$ip_b"

# "hook:id" of the programs attached to a veth, sorted, for before/after compares.
attached_prog_ids() {
  ebpf_cni_hook_programs "$1" | tr '\n' ' '
}
veth_a=$(pod_host_veth a)
veth_b=$(pod_host_veth b)
progs_a=$(attached_prog_ids "$veth_a")
[[ -n $progs_a ]] || fail "no programs on $veth_a"
count_a=$(pod_packet_count a)

restart_checks() {
  local how=$1
  expect_eq "[$how] endpoints re-adopted" 2 "$(endpoint_count)"
  for pod in a b; do
    local veth state
    veth=$(pod_host_veth "$pod")
    expect_eq "[$how] $pod keeps its host veth" "$( [[ $pod == a ]] && echo "$veth_a" || echo "$veth_b")" "$veth"
    expect_eq "[$how] BPF filters on $veth (no duplicates)" 2 "$(tc_bpf_filter_count "$veth")"
    state=$(endpoints_json | jq -r --arg v "$veth" '.endpoints[] | select(.host_interface_name == $v) | .state')
    expect_eq "[$how] $pod attachment state" ATTACHMENT_STATE_ATTACHED "$state"
  done
  check "[$how] a -> b" ping_ok a "$ip_b"
  check "[$how] b -> a (IPv6)" ping_ok b "$(pod_ip a 6)"
  local now
  now=$(pod_packet_count a)
  ((now > count_a)) || fail "[$how] counters of a did not keep counting: $count_a -> $now"
  count_a=$now
  ITEST_CHECKS=$((ITEST_CHECKS + 1))
}

log "kill -9 the datapath"
dp_pid=$(<"$EBPF_CNI_RUN_DIR/datapath.pid")
kill -KILL "$dp_pid"
for _ in $(seq 50); do kill -0 "$dp_pid" 2>/dev/null || break; sleep 0.1; done
check "traffic flows while the datapath is down" ping_ok a "$ip_b"
check "programs stay attached while it is down" test "$(attached_prog_ids "$veth_a")" = "$progs_a"

log "restart via up.sh"
node_up
[[ $(<"$EBPF_CNI_RUN_DIR/datapath.pid") != "$dp_pid" ]] || fail "datapath was not restarted"
restart_checks "after kill -9"

log "graceful restart (SIGTERM) of every service"
EBPF_CNI_RESTART=1 node_up
restart_checks "after SIGTERM restart"

log "the restarted datapath serves new pods and deletes old ones"
pod_add c
check "c -> a" ping_ok c "$ip_a"
expect_eq "filters on c" 2 "$(tc_bpf_filter_count "$(pod_host_veth c)")"
pod_del a
expect_eq "filters left on a's veth" 0 "$(tc_bpf_filter_count "$veth_a" 2>/dev/null)"
expect_eq "endpoints after DEL a" 2 "$(endpoint_count)"
pod_del b
pod_del c
expect_eq "endpoints at the end" 0 "$(endpoint_count)"
