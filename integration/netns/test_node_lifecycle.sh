#!/usr/bin/env bash
# up.sh / down.sh behave as the one way to run a node: up.sh twice starts no
# duplicates, installs the binary and a conflist runtimes accept (ebpf-cni,
# portmap, bandwidth with their capabilities, reference plugins reachable);
# down.sh removes what up.sh installed but keeps persistent state, so
# allocations survive a down/up cycle; --purge removes state and pins.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init lifecycle 8

daemon_count() { pgrep -fc -- "ebpf-cni-$1 --socket=$EBPF_CNI_RUN_DIR/$1.sock" || true; }
pids() { cat "$EBPF_CNI_RUN_DIR"/{ipam,datapath,identity}.pid | tr '\n' ' '; }

node_up
first=$(pids)
node_up
expect_eq "pids after a second up.sh" "$first" "$(pids)"
for svc in ipam datapath identity; do
  expect_eq "$svc processes" 1 "$(daemon_count "$svc")"
done

log "installed files"
check "ebpf-cni installed" test -x "$EBPF_CNI_BIN_DIR/ebpf-cni"
for plugin in portmap bandwidth loopback; do
  check "$plugin reachable in $EBPF_CNI_BIN_DIR" test -x "$EBPF_CNI_BIN_DIR/$plugin"
done
conflist=$EBPF_CNI_CONF_DIR/10-$EBPF_CNI_NETWORK_NAME.conflist
expect_eq "conflist cniVersion" 1.0.0 "$(jq -r .cniVersion "$conflist")"
expect_eq "conflist name" "$EBPF_CNI_NETWORK_NAME" "$(jq -r .name "$conflist")"
expect_eq "plugin chain" "ebpf-cni portmap bandwidth" "$(jq -r '[.plugins[].type] | join(" ")' "$conflist")"
expect_eq "ebpf-cni runDir" "$EBPF_CNI_RUN_DIR" "$(jq -r '.plugins[0].runDir' "$conflist")"
expect_eq "ebpf-cni hostVethPrefix" "$EBPF_CNI_VETH_PREFIX" "$(jq -r '.plugins[0].hostVethPrefix' "$conflist")"
expect_eq "ebpf-cni logFile" "$EBPF_CNI_LOG_DIR/cni.log" "$(jq -r '.plugins[0].logFile' "$conflist")"
expect_eq "portmap capability" true "$(jq -r '.plugins[1].capabilities.portMappings' "$conflist")"
expect_eq "bandwidth capability" true "$(jq -r '.plugins[2].capabilities.bandwidth' "$conflist")"
# ebpf-cni reads the bandwidth runtime config too, to attach a pod with an
# egress limit as TCX links (which leave the bandwidth plugin its qdiscs).
expect_eq "ebpf-cni sees the bandwidth capability" true "$(jq -r '.plugins[0].capabilities.bandwidth' "$conflist")"

log "a pod through the whole chain, with port mapping and bandwidth runtime config"
# Both directions: to-pod shaping is a tbf root qdisc on the host veth;
# from-pod shaping is an "ingress" qdisc there redirecting to an ifb device
# with its own tbf. Our programs are TCX links, so neither qdisc is in their
# way (with clsact filters the ingress qdisc could not be created).
pod_add a --runtime-config '{"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}],
  "bandwidth": {"ingressRate": 100000000, "ingressBurst": 1000000,
                "egressRate": 20000000, "egressBurst": 200000}}'
pod_add b
ip_a=$(pod_ip a 4)
veth_a=$(pod_host_veth a)
check "bandwidth plugin shaped traffic to the pod (tbf root qdisc on the host veth)" \
  bash -c "tc qdisc show dev $veth_a | grep -q 'tbf.*rate 100Mbit'"
ifb=$(tc filter show dev "$veth_a" ingress | sed -n 's/.*Redirect to device \([^)]*\)).*/\1/p' | head -n1)
[[ -n $ifb ]] || fail "no redirect to an ifb device on $veth_a: $(tc filter show dev "$veth_a" ingress)"
check "bandwidth plugin shapes traffic from the pod (tbf on its ifb $ifb)" \
  bash -c "tc qdisc show dev $ifb | grep -q 'tbf.*rate 20Mbit'"
expect_eq "our programs on $veth_a next to the bandwidth plugin's qdiscs" 2 "$(tc_bpf_filter_count "$veth_a")"
expect_eq "a (egress limit) is attached with TCX links" "$(cat "/sys/class/net/$veth_a/ifindex")-egress $(cat "/sys/class/net/$veth_a/ifindex")-ingress" \
  "$(ls "$EBPF_CNI_BPF_DIR/links" | sort | tr '\n' ' ' | sed 's/ $//')"
veth_b=$(pod_host_veth b)
check "b (no limit) has the node's default clsact filters" \
  bash -c "tc filter show dev $veth_b ingress | grep -q ' bpf '"
ifb_tx() { cat "/sys/class/net/$ifb/statistics/tx_packets"; }
ifb_before=$(ifb_tx)
check "a -> b through the ifb shaper and our programs" ping_ok b "$ip_a"
check "a -> b through the ifb shaper and our programs" ping_ok a "$(pod_ip b 4)"
check "a's packets went through $ifb" test "$(ifb_tx)" -gt "$ifb_before"
pod_del b
portmap_rules() { iptables-save -t nat | grep -cF "id: \\\"$(pod_container_id a)\\\"" || true; }
expect_eq "portmap DNAT rules for a (host port 18080)" 1 "$(portmap_rules)"

log "down.sh keeps state; allocations survive down/up"
node_down
for svc in ipam datapath identity; do
  expect_eq "$svc processes after down" 0 "$(daemon_count "$svc")"
  check "$svc pid file removed" test ! -e "$EBPF_CNI_RUN_DIR/$svc.pid"
  check "$svc socket removed" test ! -e "$EBPF_CNI_RUN_DIR/$svc.sock"
done
check "ebpf-cni removed" test ! -e "$EBPF_CNI_BIN_DIR/ebpf-cni"
check "conflist removed" test ! -e "$conflist"
for plugin in portmap bandwidth loopback; do
  check "$plugin link removed" test ! -e "$EBPF_CNI_BIN_DIR/$plugin"
done
check "state kept" test -f "$EBPF_CNI_STATE_DIR/ipam.db"
check "BPF pins kept" test -d "$EBPF_CNI_BPF_DIR"
gw=$(pod_exec a ip -4 route show default | awk '{print $3; exit}')
check "pod -> host traffic keeps flowing with the node down (programs stay in the kernel)" ping_ok a "$gw"

node_up
expect_eq "allocation of a after down/up" "$ip_a" \
  "$(allocations_json | jq -r '.allocations[].ips[] | select(.family == "IP_FAMILY_IPV4") | .address')"
expect_eq "endpoint of a re-adopted" 1 "$(endpoint_count)"
pod_del a
expect_eq "host veth (and its tbf qdisc) gone with the pod" "" "$(host_veths)"
check "bandwidth plugin's ifb $ifb gone with the pod" test ! -e "/sys/class/net/$ifb"
expect_eq "TCX link pins left" "" "$(ls "$EBPF_CNI_BPF_DIR/links" 2>/dev/null)"
expect_eq "portmap DNAT rules for a after DEL" 0 "$(portmap_rules)"

log "down.sh --purge removes state and pins"
"$DEPLOY/down.sh" --purge
check "state dir removed" test ! -e "$EBPF_CNI_STATE_DIR"
check "BPF pin dir removed" test ! -e "$EBPF_CNI_BPF_DIR"
