#!/usr/bin/env bash
# The five-minute tour of ebpf-cni on one machine (run as root):
#   installs the Debian packages, builds, brings the node up (up.sh, with the
#   policy agent reading $EBPF_CNI_MANIFEST_DIR), creates three "pods" of
#   namespace demo (network namespaces ebpf-cni-demo-frontend, -backend and
#   -other) whose Pod objects are in that manifest directory, attaches them
#   through the CNI binary exactly as a kubelet's runtime would (cni-exec.sh
#   with K8S_POD_NAMESPACE/K8S_POD_NAME), pings, then applies a standard
#   networking.k8s.io/v1 NetworkPolicy allowing only frontend -> backend on
#   TCP 8080 and shows for real: frontend gets through, other is dropped;
#   `ebpf-cni-ctl policy trace` for both (which rule allowed, which policy
#   isolates), the drop event, and the per-rule counters.
# The node and the pods stay up afterwards so you can look around.
#
# usage: demo.sh            run the demo (again: pods are recreated)
#        demo.sh --cleanup  delete the demo pods and stop the node (down.sh)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/local/env.sh
source "$HERE/env.sh"
ebpf_cni_require_root

NAMESPACE=demo
POD_NAMES=(frontend backend other)
PORT=8080
MANIFEST=$EBPF_CNI_MANIFEST_DIR/demo.yaml
POLICY=$EBPF_CNI_MANIFEST_DIR/demo-policy.yaml
SERVER_PIDFILE=$EBPF_CNI_STATE_DIR/demo-backend-server.pid

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
netns_of() { echo "ebpf-cni-demo-$1"; }

stop_server() {
  [[ -f $SERVER_PIDFILE ]] || return 0
  local pid
  pid=$(<"$SERVER_PIDFILE")
  # Only our server: a recycled pid must not be signalled.
  if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "nc -ll -p $PORT"; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  rm -f "$SERVER_PIDFILE"
}

delete_pod() {
  local pod=$1 netns
  netns=$(netns_of "$pod")
  if [[ -x $EBPF_CNI_BIN_DIR/ebpf-cni && -r $EBPF_CNI_CONFLIST ]]; then
    "$HERE/cni-exec.sh" DEL "$netns" "$netns" >/dev/null 2>&1 ||
      echo "warning: CNI DEL of $pod failed (see $EBPF_CNI_LOG_DIR/cni.log)" >&2
  fi
  if ip netns list | grep -qw "^$netns"; then ip netns delete "$netns"; fi
}

pod_ip() {
  ip -n "$(netns_of "$1")" -o -4 addr show dev eth0 scope global | awk '{split($4, a, "/"); print a[1]; exit}'
}

# One bounded TCP connection from a pod; says what happened.
connect() {
  local from=$1 to=$2 ip reply
  ip=$(pod_ip "$to")
  if reply=$(ip netns exec "$(netns_of "$from")" timeout 3 bash -c "exec 3<>/dev/tcp/$ip/$PORT && cat <&3" 2>/dev/null) &&
    [[ -n $reply ]]; then
    echo "  $from -> $to ($ip:$PORT): connected, got \"$reply\""
  else
    echo "  $from -> $to ($ip:$PORT): no connection (timed out: dropped)"
  fi
}

if [[ ${1:-} == --cleanup ]]; then
  step "Deleting demo pods"
  stop_server
  for pod in "${POD_NAMES[@]}"; do delete_pod "$pod"; done
  rm -f "$MANIFEST" "$POLICY"
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
  ebpf-cni ebpf-cni-ipam ebpf-cni-datapath ebpf-cni-identity ebpf-cni-grpc-probe ebpf-cni-policy ebpf-cni-ctl

step "The cluster state: Namespace $NAMESPACE and three Pods ($MANIFEST)"
mkdir -p "$EBPF_CNI_MANIFEST_DIR"
rm -f "$POLICY" # a previous run's policy
cat >"$MANIFEST.tmp" <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $NAMESPACE}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: $NAMESPACE, labels: {app: frontend}}
spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: backend, namespace: $NAMESPACE, labels: {app: backend}}
spec: {containers: [{name: api, image: api, ports: [{name: http, containerPort: $PORT}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: $NAMESPACE, labels: {app: other}}
spec: {containers: [{name: tool, image: busybox}]}
EOF
mv -f "$MANIFEST.tmp" "$MANIFEST" # atomic: the agent never reads half a file
cat "$MANIFEST"

step "Starting the node (deploy/local/up.sh)"
EBPF_CNI_POLICY=1 "$HERE/up.sh"
ebpf_cni_ctl status --wait --timeout=30s

step "Creating pods ${POD_NAMES[*]} and attaching them via CNI ADD (K8S_POD_NAMESPACE=$NAMESPACE)"
stop_server
for pod in "${POD_NAMES[@]}"; do
  netns=$(netns_of "$pod")
  delete_pod "$pod" # a previous run's pod
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  "$HERE/cni-exec.sh" --args "K8S_POD_NAMESPACE=$NAMESPACE;K8S_POD_NAME=$pod" ADD "$netns" "$netns" |
    jq -c --arg pod "$pod" '{pod: $pod, interfaces: [.interfaces[]?.name], ips: [.ips[]?.address]}'
done

step "Datapath endpoints: each pod has the identity of its labels (DatapathService.ListEndpoints)"
"$EBPF_CNI_PROBE" endpoints "$(ebpf_cni_socket datapath)" | jq -r '
  ["POD", "IDENTITY", "HOST VETH", "ADDRESSES"],
  (.endpoints[] | [.pod_namespace + "/" + .pod_name, (.identity // 0), .host_interface_name,
    (.addresses | join(","))])
  | @tsv' | column -t -s $'\t'

step "Traffic before any NetworkPolicy: ping frontend -> backend, TCP $PORT from frontend and other"
ip netns exec "$(netns_of frontend)" ping -c 2 -i 0.2 -W 2 "$(pod_ip backend)"
# A TCP server in backend answering every connection (bounded lifetime).
ip netns exec "$(netns_of backend)" timeout 3600 busybox nc -ll -p "$PORT" -e echo hello-from-backend \
  </dev/null >/dev/null 2>&1 &
echo $! >"$SERVER_PIDFILE"
sleep 0.3
connect frontend backend
connect other backend

step "Applying a NetworkPolicy: only app=frontend may reach app=backend, on TCP $PORT ($POLICY)"
before=$(ebpf_cni_ctl status --json | jq -r '.compiled_generation | tonumber')
cat >"$POLICY.tmp" <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend, namespace: $NAMESPACE}
spec:
  podSelector: {matchLabels: {app: backend}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{protocol: TCP, port: $PORT}]
EOF
mv -f "$POLICY.tmp" "$POLICY"
cat "$POLICY"
# Returns once the kernel holds the compiled policy on every endpoint.
ebpf_cni_ctl status --wait --timeout=30s --min_generation="$before" >/dev/null

step "Traffic with the policy (real connections)"
events=$EBPF_CNI_STATE_DIR/demo-events.txt
ebpf_cni_ctl policy events --types=drop --count=1 --follow_for=15s >"$events" 2>&1 &
events_pid=$!
sleep 0.3
connect frontend backend
connect other backend

step "Why? ebpf-cni-ctl policy trace (compiled state, confirmed by the kernel's own programs)"
ebpf_cni_ctl policy trace --from "$NAMESPACE/frontend" --to "$NAMESPACE/backend" --protocol tcp --port "$PORT" || true
echo
ebpf_cni_ctl policy trace --from "$NAMESPACE/other" --to "$NAMESPACE/backend" --protocol tcp --port "$PORT" || true

step "The drop event of other's connection (ebpf-cni-ctl policy events --types=drop)"
wait "$events_pid" || true
cat "$events"

step "Policies, the endpoints they select and per-rule packet counters (ebpf-cni-ctl policy list)"
ebpf_cni_ctl policy list
ebpf_cni_ctl policy verify || true

step "Done. The node keeps running."
cat <<EOF
  logs:        $EBPF_CNI_LOG_DIR/{ipam,datapath,identity,policy,cni}.log
  try:         $EBPF_CNI_CTL --policy_socket=unix:$(ebpf_cni_socket policy) \
                 policy trace --from $NAMESPACE/other --to $NAMESPACE/backend --port $PORT
               ip netns exec $(netns_of other) ping $(pod_ip backend)   (dropped: only TCP $PORT from frontend)
               edit $POLICY or $MANIFEST: the agent applies changes within milliseconds
  tear down:   $0 --cleanup
EOF
