#!/usr/bin/env bash
# The five-minute tour of ebpf-cni on one machine (run as root):
#   installs the Debian packages, builds, brings the node up (up.sh), creates
#   two "pods" (network namespaces ebpf-cni-demo-a and -b), attaches them
#   through the CNI binary exactly as a container runtime would (cni-exec.sh
#   runs the whole conflist), shows their addresses, pings pod<->pod and
#   pod->host, and prints the per-endpoint traffic counters the datapath's
#   TC programs collected.
# The node and the pods stay up afterwards so you can look around.
#
# usage: demo.sh            run the demo (again: pods are recreated)
#        demo.sh --cleanup  delete the demo pods and stop the node (down.sh)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/local/env.sh
source "$HERE/env.sh"
ebpf_cni_require_root

PODS=(ebpf-cni-demo-a ebpf-cni-demo-b)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

delete_pod() {
  local pod=$1
  if [[ -x $EBPF_CNI_BIN_DIR/ebpf-cni && -r $EBPF_CNI_CONFLIST ]]; then
    "$HERE/cni-exec.sh" DEL "$pod" "$pod" >/dev/null 2>&1 ||
      echo "warning: CNI DEL of $pod failed (see $EBPF_CNI_LOG_DIR/cni.log)" >&2
  fi
  if ip netns list | grep -qw "^$pod"; then ip netns delete "$pod"; fi
}

pod_ip() {
  ip -n "$1" -o -4 addr show dev eth0 scope global | awk '{split($4, a, "/"); print a[1]; exit}'
}

if [[ ${1:-} == --cleanup ]]; then
  step "Deleting demo pods"
  for pod in "${PODS[@]}"; do delete_pod "$pod"; done
  step "Stopping the node"
  "$HERE/down.sh"
  exit 0
elif [[ $# -gt 0 ]]; then
  echo "usage: demo.sh [--cleanup]" >&2
  exit 2
fi

step "Installing build and runtime dependencies (Debian packages)"
"$EBPF_CNI_REPO/tools/setup-deps.sh"

step "Building into $EBPF_CNI_BUILD_DIR"
if [[ ! -f $EBPF_CNI_BUILD_DIR/CMakeCache.txt ]]; then
  cmake -S "$EBPF_CNI_REPO" -B "$EBPF_CNI_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$EBPF_CNI_BUILD_DIR" -j "${EBPF_CNI_BUILD_JOBS:-2}" --target \
  ebpf-cni ebpf-cni-ipam ebpf-cni-datapath ebpf-cni-identity ebpf-cni-grpc-probe

step "Starting the node (deploy/local/up.sh)"
"$HERE/up.sh"

step "Creating pods ${PODS[*]} and attaching them via CNI ADD"
for pod in "${PODS[@]}"; do
  delete_pod "$pod" # a previous run's pod
  ip netns add "$pod"
  ip -n "$pod" link set lo up
  "$HERE/cni-exec.sh" --args "K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$pod" ADD "$pod" "$pod" |
    jq -c '{interfaces: [.interfaces[]?.name], ips: [.ips[]?.address]}'
done

step "Pod addresses"
for pod in "${PODS[@]}"; do
  echo "--- $pod"
  ip -n "$pod" -brief addr show dev eth0
  ip -n "$pod" route show
done

ip_a=$(pod_ip "${PODS[0]}")
ip_b=$(pod_ip "${PODS[1]}")
gateway=$(ip -n "${PODS[0]}" -4 route show default | awk '{print $3; exit}')

step "Traffic: a -> b ($ip_b), b -> a ($ip_a), a -> host ($gateway)"
ip netns exec "${PODS[0]}" ping -c 3 -i 0.2 -W 2 "$ip_b"
ip netns exec "${PODS[1]}" ping -c 3 -i 0.2 -W 2 "$ip_a"
ip netns exec "${PODS[0]}" ping -c 3 -i 0.2 -W 2 "$gateway"

step "Datapath endpoints and counters (DatapathService.ListEndpoints)"
"$EBPF_CNI_PROBE" endpoints "$(ebpf_cni_socket datapath)" | jq -r '
  ["ENDPOINT", "HOST VETH", "ADDRESSES", "FROM-POD PKTS", "TO-POD PKTS", "STATE"],
  (.endpoints[] | [.key.container_id + "/" + .key.interface_name, .host_interface_name,
    (.addresses | join(",")), .counters.from_pod_packets, .counters.to_pod_packets, .state])
  | @tsv' | column -t -s $'\t'

step "TC programs on the host veths"
for veth in $("$EBPF_CNI_PROBE" endpoints "$(ebpf_cni_socket datapath)" | jq -r '.endpoints[].host_interface_name'); do
  echo "--- $veth"
  tc filter show dev "$veth" ingress
  tc filter show dev "$veth" egress
done

# TODO(policy): NetworkPolicy demo (deny b -> a, then allow by label) once
# the identity and policy issues land.
step "NetworkPolicy: not in this demo yet (TODO: deny b -> a, then allow by label)"

step "Done. The node keeps running."
cat <<EOF
  logs:        $EBPF_CNI_LOG_DIR/{ipam,datapath,identity,cni}.log
  try:         ip netns exec ${PODS[0]} ping $ip_b
  tear down:   $0 --cleanup
               (= CNI DEL of both pods, ip netns delete ${PODS[*]}, deploy/local/down.sh)
EOF
