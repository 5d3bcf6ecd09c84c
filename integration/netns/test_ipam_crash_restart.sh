#!/usr/bin/env bash
# IPAM is killed with SIGKILL between ADDs and brought back by up.sh: its
# allocations survive (SQLite state), no address is handed out twice, and a
# repeated ADD for an existing pod returns the address it already has.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init ipamcrash 4

node_up
pod_add a
pod_add b
ipam_pid=$(<"$EBPF_CNI_RUN_DIR/ipam.pid")

log "kill -9 IPAM (pid $ipam_pid)"
kill -KILL "$ipam_pid"
for _ in $(seq 50); do kill -0 "$ipam_pid" 2>/dev/null || break; sleep 0.1; done
check "IPAM is gone" bash -c "! kill -0 $ipam_pid 2>/dev/null"

log "ADD while IPAM is down fails cleanly with 'try again later' (11)"
pod_netns_create down
rc=0
out=$("$DEPLOY/cni-exec.sh" ADD "$(pod_container_id down)" "$(pod_netns_path down)") || rc=$?
((rc != 0)) || fail "ADD succeeded with IPAM down"
expect_eq "error code with IPAM down" 11 "$(jq -r .code <<<"$out")"
expect_eq "links in pod 'down' after failed ADD" 1 "$(ip -n "$(pod_netns_name down)" -o link show | wc -l)"

log "restart via up.sh"
node_up
new_pid=$(<"$EBPF_CNI_RUN_DIR/ipam.pid")
[[ $new_pid != "$ipam_pid" ]] || fail "up.sh did not start a new IPAM"
expect_eq "allocations kept across kill -9" 2 "$(allocation_count)"

pod_add c
pod_add d
declare -A seen=()
for pod in a b c d; do
  ip=$(pod_ip "$pod" 4)
  [[ -z ${seen[$ip]:-} ]] || fail "$ip handed to both ${seen[$ip]} and $pod"
  seen[$ip]=$pod
done
ITEST_CHECKS=$((ITEST_CHECKS + 1))

log "second kill -9 right after an ADD, then re-ADD of an existing pod is idempotent"
kill -KILL "$(<"$EBPF_CNI_RUN_DIR/ipam.pid")"
sleep 0.2
node_up
ip_c=$(pod_ip c 4)
out=$("$DEPLOY/cni-exec.sh" --plugin-only ADD "$(pod_container_id c)" "$(pod_netns_path c)" 2>&1 || true)
# Re-ADD either returns the same address or refuses because eth0 exists;
# it must never hand out a new address.
if jq -e '.ips' >/dev/null 2>&1 <<<"$out"; then
  expect_eq "re-ADD address of c" "$ip_c" "$(jq -r '.ips[0].address | split("/")[0]' <<<"$out")"
fi
expect_eq "allocations after re-ADD" 4 "$(allocation_count)"
check "c still reachable after the re-ADD" ping_ok a "$ip_c"
pod_add e
for pod in a b c d; do
  [[ $(pod_ip e 4) != "$(pod_ip "$pod" 4)" ]] || fail "e got $pod's address"
done
check "a -> e traffic" ping_ok a "$(pod_ip e 4)"
for pod in a b c d e; do pod_del "$pod"; done
expect_eq "allocations at the end" 0 "$(allocation_count)"
