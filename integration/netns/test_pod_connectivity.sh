#!/usr/bin/env bash
# Several pods ADDed through the real conflist get distinct addresses;
# pod<->pod and pod<->host traffic (ICMP and TCP, IPv4 and IPv6) works; the
# datapath's TC programs are attached to each host veth and count packets.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init connectivity 1

node_up
PODS=(a b c)
for pod in "${PODS[@]}"; do pod_add "$pod"; done

log "distinct addresses inside the pool"
declare -A seen=()
for pod in "${PODS[@]}"; do
  ip4=$(pod_ip "$pod" 4)
  ip6=$(pod_ip "$pod" 6)
  [[ $ip4 == 10.99.1.* ]] || fail "pod $pod IPv4 '$ip4' not from pool $EBPF_CNI_POD_CIDR"
  [[ $ip6 == fd00:99:1:* ]] || fail "pod $pod IPv6 '$ip6' not from pool $EBPF_CNI_POD_CIDR6"
  [[ -z ${seen[$ip4]:-} && -z ${seen[$ip6]:-} ]] || fail "address of $pod handed out twice"
  seen[$ip4]=$pod
  seen[$ip6]=$pod
  # The address is really configured on the pod's eth0.
  check "$pod has $ip4 on eth0" bash -c "ip -n $(pod_netns_name "$pod") -4 addr show dev eth0 | grep -q 'inet $ip4/32'"
  check "$pod has $ip6 on eth0" bash -c "ip -n $(pod_netns_name "$pod") -6 addr show dev eth0 | grep -q 'inet6 $ip6/128'"
done
expect_eq "IPAM allocations" 3 "$(allocation_count)"
expect_eq "datapath endpoints" 3 "$(endpoint_count)"

log "TC programs attached on every host veth"
for pod in "${PODS[@]}"; do
  veth=$(pod_host_veth "$pod")
  [[ -n $veth ]] || fail "datapath has no endpoint for $pod"
  [[ $veth == "$EBPF_CNI_VETH_PREFIX"* ]] || fail "host veth $veth lacks prefix $EBPF_CNI_VETH_PREFIX"
  expect_eq "BPF filters (ingress+egress) on $veth" 2 "$(tc_bpf_filter_count "$veth")"
  programs=$(ebpf_cni_hook_programs "$veth" | tr '\n' ' ')
  from_pod=$(sed -n 's/.*ingress:\([0-9]*\).*/\1/p' <<<"$programs")
  to_pod=$(sed -n 's/.*egress:\([0-9]*\).*/\1/p' <<<"$programs")
  expect_eq "program on $veth's ingress ($programs)" from_container \
    "$(bpftool -j prog show id "${from_pod:-0}" 2>/dev/null | jq -r .name)"
  expect_eq "program on $veth's egress ($programs)" to_container \
    "$(bpftool -j prog show id "${to_pod:-0}" 2>/dev/null | jq -r .name)"
  state=$(endpoints_json | jq -r --arg v "$veth" '.endpoints[] | select(.host_interface_name == $v) | .state')
  expect_eq "endpoint state of $pod" ATTACHMENT_STATE_ATTACHED "$state"
done

before_a=$(pod_packet_count a)
before_b=$(pod_packet_count b)

log "ICMP pod<->pod and pod->host (gateway on the host veth), both families"
gw4=$(pod_exec a ip -4 route show default | awk '{print $3; exit}')
gw6=$(pod_exec a ip -6 route show default | awk '{print $3; exit}')
[[ -n $gw4 && -n $gw6 ]] || fail "pod a has no default routes (v4 '$gw4', v6 '$gw6')"
for src in "${PODS[@]}"; do
  for dst in "${PODS[@]}"; do
    [[ $src == "$dst" ]] && continue
    check "ping $src -> $dst (IPv4)" ping_ok "$src" "$(pod_ip "$dst" 4)"
    check "ping $src -> $dst (IPv6)" ping_ok "$src" "$(pod_ip "$dst" 6)"
  done
  check "ping $src -> host $gw4" ping_ok "$src" "$gw4"
  check "ping $src -> host $gw6" ping_ok "$src" "$gw6"
done
log "ICMP host -> pod"
check "ping host -> a" bash -c "ping -c 2 -i 0.2 -W 2 -q $(pod_ip a 4) >/dev/null"

log "TCP pod->pod (IPv4 and IPv6) and host->pod"
tcp_server_start b 8080
check "TCP a -> b:8080 (IPv4)" tcp_ok a "$(pod_ip b 4)" 8080
check "TCP c -> b:8080 (IPv6)" tcp_ok c "$(pod_ip b 6)" 8080
reply=$(timeout 3 bash -c "exec 3<>/dev/tcp/$(pod_ip b 4)/8080 && cat <&3" 2>/dev/null || true)
expect_eq "TCP host -> b:8080" tcp-ok "$reply"

log "counters grew"
after_a=$(pod_packet_count a)
after_b=$(pod_packet_count b)
((after_a >= before_a + 10)) || fail "pod a counters did not grow enough: $before_a -> $after_a"
((after_b >= before_b + 10)) || fail "pod b counters did not grow enough: $before_b -> $after_b"
ITEST_CHECKS=$((ITEST_CHECKS + 2))
# Both directions are counted separately.
endpoints_json | jq -e --arg cid "$(pod_container_id a)" '.endpoints[] | select(.key.container_id == $cid)
  | (.counters.from_pod_packets | tonumber) > 0 and (.counters.to_pod_packets | tonumber) > 0
    and (.counters.from_pod_bytes | tonumber) > 0 and (.counters.to_pod_bytes | tonumber) > 0' >/dev/null ||
  fail "pod a counters not counting both directions: $(endpoints_json)"

log "CHECK passes for a healthy pod"
# ebpf-cni only: Debian's bandwidth plugin (1.1.1) dereferences a nil config
# on CHECK when the pod has no bandwidth limits and panics; that is its bug,
# not something our chain can fix.
check "CNI CHECK of a" "$DEPLOY/cni-exec.sh" --plugin-only CHECK "$(pod_container_id a)" "$(pod_netns_path a)"

for pod in "${PODS[@]}"; do pod_del "$pod"; done
expect_eq "allocations after DEL" 0 "$(allocation_count)"
