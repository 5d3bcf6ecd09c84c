#!/usr/bin/env bash
# containerd 1.6's CRI plugin — the path kubelet uses — sets up pod networks
# through CNI: two pod sandboxes started with RunPodSandbox get addresses
# from the network's pool (reported back in PodSandboxStatus), reach each
# other, a hostPort mapping (portmap via CRI's portMappings capability)
# reaches a server in a pod, ingress- and egress-bandwidth annotations become
# tbf qdiscs on the host veth and on an ifb device the host veth's ingress
# redirects to (bandwidth plugin, next to our TCX-attached programs), and
# StopPodSandbox/RemovePodSandbox run CNI DEL
# so nothing is left behind.
#
# Usage: containerd_cri_test.sh --cni=bridge | --cni=ebpf-cni
# Needs cri-pod-client (built from cri/) in EBPF_CNI_BUILD_DIR: Debian 12
# ships no crictl.
#
# The sandbox ("pause") image is a local busybox image whose command is a
# long sleep, imported into CRI's k8s.io namespace; nothing is pulled.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/containerd_lib.sh"

rt_parse_mode "$@"
rt_init "containerd-cri-$RT_MODE" 280
: "${EBPF_CNI_BUILD_DIR:?set EBPF_CNI_BUILD_DIR to the CMake build dir}"
cri_client=$(rt_find_built cri-pod-client) || rt_die "cri-pod-client not built in $EBPF_CNI_BUILD_DIR"

rt_setup_network

rt_build_rootfs "$RT_WORK/rootfs" || rt_die "cannot build rootfs"
sandbox_image="docker.io/library/ebpfcni-rt-pause:$RT_TAG"
rt_build_oci_image "$RT_WORK/rootfs" "$sandbox_image" "$RT_WORK/pause.tar" '["/bin/sleep","100000"]' ||
  rt_die "cannot build the sandbox image"

rt_start_containerd k8s.io "$sandbox_image"
ctr_ images import --snapshotter native "$RT_WORK/pause.tar" >/dev/null || rt_die "image import failed"

cri() { timeout 90 "$cri_client" "$RT_CTR_SOCK" "$@"; }
rt_log "CRI runtime: $(cri version)"
# The CRI plugin loads the conflist asynchronously; RunPodSandbox fails with
# "cni plugin not initialized" until it has.
rt_wait_until 20 bash -c "grep -q 'CNI config is successfully loaded\|Start cni network conf syncer' '$RT_WORK/containerd.log'"

host_port=$((20000 + (16#${RT_TAG:0:4} + 5000) % 10000))
sandboxes=()
# Whatever happens, stop and remove our sandboxes through CRI (CNI DEL).
rt_defer "for id in \$(cat '$RT_WORK/sandboxes' 2>/dev/null); do
    '$cri_client' '$RT_CTR_SOCK' stop \$id; '$cri_client' '$RT_CTR_SOCK' remove \$id; done; true"
for pod in p1 p2; do
  # p1: ingress and egress limits (containerd turns the annotations into the
  # CNI "bandwidth" capability); p2: a hostPort (the "portMappings" capability).
  options=(--annotation kubernetes.io/ingress-bandwidth=10M --annotation kubernetes.io/egress-bandwidth=5M)
  [[ $pod == p2 ]] && options=(--port "127.0.0.1:$host_port:8080")
  id=$(cri run "rt-$RT_TAG-$pod" "rt-$RT_TAG" "uid-$RT_TAG-$pod" "${options[@]}") ||
    { tail -20 "$RT_WORK/containerd.log" >&2; rt_die "RunPodSandbox $pod failed"; }
  echo "$id" >>"$RT_WORK/sandboxes"
  sandboxes+=("$id")
done

status1=$(cri status "${sandboxes[0]}")
status2=$(cri status "${sandboxes[1]}")
rt_log "p1: $status1"
rt_log "p2: $status2"
ip1=$(jq -r .ip <<<"$status1")
ip2=$(jq -r .ip <<<"$status2")
pid1=$(jq -r .pid <<<"$status1")
pid2=$(jq -r .pid <<<"$status2")
rt_expect "both sandboxes are READY" \
  test "$(jq -r .state <<<"$status1")/$(jq -r .state <<<"$status2")" = SANDBOX_READY/SANDBOX_READY
rt_expect "p1 address $ip1 is from the pool ${RT_SUBNET_PREFIX}0" test "${ip1%.*}." = "$RT_SUBNET_PREFIX"
rt_expect "p2 address $ip2 is from the pool ${RT_SUBNET_PREFIX}0" test "${ip2%.*}." = "$RT_SUBNET_PREFIX"
rt_expect "the two pods got different addresses" test "$ip1" != "$ip2"
ip6_1=$(jq -r '.additional_ips[0] // ""' <<<"$status1")
ip6_2=$(jq -r '.additional_ips[0] // ""' <<<"$status2")
rt_expect "p1 IPv6 address '$ip6_1' (CRI additional_ips) is from the pool ${RT_SUBNET6_PREFIX}" \
  test "${ip6_1#"$RT_SUBNET6_PREFIX"}" != "$ip6_1"
rt_expect "p2 IPv6 address '$ip6_2' (CRI additional_ips) is from the pool ${RT_SUBNET6_PREFIX}" \
  test "${ip6_2#"$RT_SUBNET6_PREFIX"}" != "$ip6_2"
rt_expect "eth0 in p1's netns carries the address CRI reported" \
  bash -c "nsenter --net=/proc/$pid1/ns/net ip -4 -o addr show eth0 | grep -q ' $ip1/'"
rt_expect_pod_state_count 2

# The host side of a pod's eth0: its peer ifindex, looked up on the host.
host_veth_of() {
  local peer
  peer=$(nsenter --net="/proc/$1/ns/net" ip -o link show eth0 | sed -n 's/.*eth0@if\([0-9]*\).*/\1/p')
  ip -o link show | awk -F': ' -v i="$peer" '$1 == i {print $2}' | cut -d@ -f1
}
veth1=$(host_veth_of "$pid1")
veth2=$(host_veth_of "$pid2")
rt_log "host veths: p1=$veth1 p2=$veth2"
rt_expect "p1's host veth ($veth1) has the bandwidth plugin's tbf qdisc (10M ingress)" \
  bash -c "tc qdisc show dev '$veth1' | grep -q 'tbf.*rate 10Mbit'"
ifb1=$(tc filter show dev "$veth1" ingress | sed -n 's/.*Redirect to device \([^)]*\)).*/\1/p' | head -n1)
rt_expect "p1's host veth ($veth1) redirects what p1 sends to an ifb device ('$ifb1')" test -n "$ifb1"
rt_expect "p1's ifb ($ifb1) has the bandwidth plugin's tbf qdisc (5M egress)" \
  bash -c "tc qdisc show dev '$ifb1' | grep -q 'tbf.*rate 5Mbit'"
rt_expect "p2's host veth ($veth2) has no rate limit" \
  bash -c "! tc qdisc show dev '$veth2' | grep -q tbf"

ifb1_tx_before=$(cat "/sys/class/net/$ifb1/statistics/tx_packets" 2>/dev/null || echo 0)
rt_expect "p1 pings p2" nsenter --net="/proc/$pid1/ns/net" ping -q -c 2 -W 2 "$ip2"
rt_expect "p1's packets went through its ifb shaper" \
  test "$(cat "/sys/class/net/$ifb1/statistics/tx_packets" 2>/dev/null || echo 0)" -gt "$ifb1_tx_before"
rt_expect "p2 pings p1" nsenter --net="/proc/$pid2/ns/net" ping -q -c 2 -W 2 "$ip1"
# A fresh IPv6 address may be tentative (DAD) for a moment.
rt_expect "p1 pings p2 over IPv6" \
  rt_wait_until 8 nsenter --net="/proc/$pid1/ns/net" ping -6 -q -c 1 -W 1 "$ip6_2"

# A server inside p2's network namespace stands in for an app container.
mkdir -p "$RT_WORK/www"
echo "hello from $RT_TAG" >"$RT_WORK/www/index.html"
nsenter --net="/proc/$pid2/ns/net" busybox httpd -f -p 8080 -h "$RT_WORK/www" &
httpd_pid=$!
rt_defer "kill $httpd_pid 2>/dev/null; true"
rt_wait_until 5 nsenter --net="/proc/$pid2/ns/net" sh -c 'cat /proc/net/tcp /proc/net/tcp6 | grep -q ":1F90 "'
rt_expect "p1 fetches a page from p2 over HTTP" bash -c \
  "timeout 15 nsenter --net=/proc/$pid1/ns/net busybox wget -q -O - http://$ip2:8080/index.html | grep -q 'hello from $RT_TAG'"
rt_expect "hostPort 127.0.0.1:$host_port reaches p2 (portmap through CRI)" \
  bash -c "curl -sf --max-time 5 'http://127.0.0.1:$host_port/index.html' | grep -q 'hello from $RT_TAG'"
kill "$httpd_pid" 2>/dev/null
wait "$httpd_pid" 2>/dev/null

for id in "${sandboxes[@]}"; do
  rt_expect "StopPodSandbox ${id:0:12}" cri stop "$id"
  rt_expect "RemovePodSandbox ${id:0:12}" cri remove "$id"
done
: >"$RT_WORK/sandboxes"
rt_expect "no sandbox container left in containerd" test -z "$(ctr_ containers ls -q)"
rt_expect "no pod netns left under containerd's state dir" \
  test -z "$(ls "$RT_WORK/containerd-state/io.containerd.grpc.v1.cri/netns" 2>/dev/null)"
rt_expect "hostPort no longer answers" \
  bash -c "! curl -sf --max-time 2 'http://127.0.0.1:$host_port/index.html' >/dev/null"
rt_expect "p1's ifb ($ifb1) went with its sandbox" test ! -e "/sys/class/net/$ifb1"
rt_expect_no_pod_leftovers

((RT_FAILURES == 0)) && rt_log "PASS"
