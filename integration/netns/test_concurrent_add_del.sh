#!/usr/bin/env bash
# 30 pods ADDed at the same time, then DELeted at the same time, through the
# whole conflist as a runtime would: every call succeeds, no address is
# handed out twice, and nothing is left behind afterwards.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init concurrent 3

COUNT=30
node_up
PODS=()
for i in $(seq -w 1 $COUNT); do
  PODS+=("p$i")
  pod_netns_create "p$i"
done
mkdir -p "$ROOT/results" "$ROOT/rc"

# One CNI call per pod, all in flight at once; exit codes go to files since
# `wait` on many jobs loses them.
run_all() {
  local command=$1 pod pids=()
  for pod in "${PODS[@]}"; do
    (
      rc=0
      "$DEPLOY/cni-exec.sh" "$command" "$(pod_container_id "$pod")" "$(pod_netns_path "$pod")" \
        >"$ROOT/results/$pod.$command.out" 2>"$ROOT/results/$pod.$command.err" || rc=$?
      echo "$rc" >"$ROOT/rc/$pod.$command"
    ) &
    pids+=($!)
  done
  # Bounded: every CNI call has its own gRPC deadlines; ctest's TIMEOUT is the backstop.
  wait "${pids[@]}"
  local failed=0
  for pod in "${PODS[@]}"; do
    if [[ $(<"$ROOT/rc/$pod.$command") != 0 ]]; then
      echo "$command $pod failed: $(cat "$ROOT/results/$pod.$command.out" "$ROOT/results/$pod.$command.err")" >&2
      failed=$((failed + 1))
    fi
  done
  expect_eq "failed concurrent ${command}s" 0 "$failed"
}

log "$COUNT concurrent ADDs"
start=$SECONDS
run_all ADD
log "ADDs took $((SECONDS - start))s"
for pod in "${PODS[@]}"; do cp "$ROOT/results/$pod.ADD.out" "$(pod_result_file "$pod")"; done

ips4=$(for pod in "${PODS[@]}"; do pod_ip "$pod" 4; done)
ips6=$(for pod in "${PODS[@]}"; do pod_ip "$pod" 6; done)
expect_eq "IPv4 addresses handed out" $COUNT "$(grep -c . <<<"$ips4")"
expect_eq "distinct IPv4 addresses" $COUNT "$(sort -u <<<"$ips4" | grep -c .)"
expect_eq "distinct IPv6 addresses" $COUNT "$(sort -u <<<"$ips6" | grep -c .)"
expect_eq "IPAM allocations" $COUNT "$(allocation_count)"
expect_eq "distinct addresses in IPAM" $((2 * COUNT)) \
  "$(allocations_json | jq '[.allocations[].ips[].address] | unique | length')"
expect_eq "datapath endpoints" $COUNT "$(endpoint_count)"
expect_eq "host veths" $COUNT "$(host_veths | wc -l)"
for veth in $(host_veths); do
  expect_eq "BPF filters on $veth" 2 "$(tc_bpf_filter_count "$veth")"
done
check "first pod reaches last pod" ping_ok "${PODS[0]}" "$(pod_ip "${PODS[-1]}" 4)"
check "last pod reaches first pod (IPv6)" ping_ok "${PODS[-1]}" "$(pod_ip "${PODS[0]}" 6)"

log "$COUNT concurrent DELs"
start=$SECONDS
run_all DEL
log "DELs took $((SECONDS - start))s"
expect_eq "IPAM allocations after DEL" 0 "$(allocation_count)"
expect_eq "rows in ipam.db after DEL" 0 "$(sqlite3 "$EBPF_CNI_STATE_DIR/ipam.db" 'SELECT count(*) FROM allocations')"
expect_eq "datapath endpoints after DEL" 0 "$(endpoint_count)"
expect_eq "host veths after DEL" "" "$(host_veths)"
expect_eq "host routes to test veths after DEL" "" "$(host_routes_to_veths)"
for pod in "${PODS[@]}"; do
  n=$(ip -n "$(pod_netns_name "$pod")" -o link show | wc -l)
  expect_eq "links left in $pod (lo only)" 1 "$n"
done
