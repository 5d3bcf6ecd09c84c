# Shared harness for the node-level integration tests (sourced, not run).
#
# A test calls `itest_init <name> <number>` and gets its own node: every
# directory under /tmp/ebpfcni-it-<name>-<pid>/, BPF pins under
# /sys/fs/bpf/ebpfcni-it-<name>-<pid>, veth prefix "ix<number>" (number 1-99, no leading zero), pools
# 10.99.<number>.0/24 and fd00:99:<number>::/64, netns names
# ebpfcni-it-<name>-<pid>-<pod>. The EXIT trap removes all of it, even on
# failure: pods (netns, veths, background processes), the node (down.sh with
# purge), and restores the forwarding sysctls it found.
# shellcheck shell=bash disable=SC2034

set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: integration tests need root (netns, veth, BPF)"
  exit 77
fi

REPO=${EBPF_CNI_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export EBPF_CNI_REPO=$REPO
export EBPF_CNI_BUILD_DIR=${EBPF_CNI_BUILD_DIR:-$REPO/build}
DEPLOY=$REPO/deploy/local
PROBE=$EBPF_CNI_BUILD_DIR/integration/netns/ebpf-cni-grpc-probe

ITEST_PODS=()      # pod names created by pod_add (for cleanup)
ITEST_BG_PIDS=()   # background processes (servers inside pods)
ITEST_SYSCTLS=()   # "key=value" to restore
ITEST_CHECKS=0

itest_init() {
  local name=$1 number=$2
  TEST_ID=ebpfcni-it-$name-$$
  ROOT=/tmp/$TEST_ID
  # shellcheck source=../../deploy/local/env.sh
  source "$DEPLOY/env.sh"
  # Network "it-<name>-<pid>", pins under /sys/fs/bpf/$TEST_ID.
  ebpf_cni_private_node "$ROOT" "${TEST_ID#ebpfcni-}" "ix$number" \
    "${ITEST_POD_CIDR:-10.99.$number.0/24}" "${ITEST_POD_CIDR6-fd00:99:$number::/64}"
  export EBPF_CNI_LOG_LEVEL=debug
  mkdir -p "$ROOT"

  local key
  for key in net.ipv4.ip_forward net.ipv6.conf.all.forwarding; do
    ITEST_SYSCTLS+=("$key=$(sysctl -n "$key")")
  done
  trap itest_cleanup EXIT
  for tool in jq ip tc bpftool sqlite3 busybox; do
    command -v "$tool" >/dev/null || fail "missing tool $tool (run tools/setup-deps.sh)"
  done
  [[ -x $PROBE ]] || fail "probe $PROBE not built"
  [[ -x $EBPF_CNI_BUILD_DIR/cni/ebpf-cni ]] || fail "CNI binary not built in $EBPF_CNI_BUILD_DIR"
  log "test $TEST_ID: pools $EBPF_CNI_POD_CIDR ${EBPF_CNI_POD_CIDR6:-}, veth prefix $EBPF_CNI_VETH_PREFIX"
}

itest_cleanup() {
  local rc=$?
  set +e
  if ((rc != 0)); then
    echo "---- test failed (exit $rc); service and CNI logs:"
    local f
    for f in "$EBPF_CNI_LOG_DIR"/*.log; do
      [[ -f $f ]] || continue
      echo "---- $f (last 40 lines)"
      tail -n 40 "$f"
    done
  fi
  local pid
  # TERM, not KILL: timeout(1) passes TERM on to the server it runs.
  for pid in "${ITEST_BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  # Pods still attached get a real DEL first (best effort, bounded), so
  # chained plugins such as portmap remove their host rules. DEL needs the
  # installed plugins, so a node the test left down comes back up for it.
  local pod attached=()
  for pod in "${ITEST_PODS[@]}"; do
    [[ -f $EBPF_CNI_STATE_DIR/cni-results/$EBPF_CNI_NETWORK_NAME-$(pod_container_id "$pod")-eth0.json ]] &&
      attached+=("$pod")
  done
  if ((${#attached[@]} > 0)); then
    EBPF_CNI_START_TIMEOUT=10 timeout 60 "$DEPLOY/up.sh" >/dev/null 2>&1
    for pod in "${attached[@]}"; do
      timeout 20 "$DEPLOY/cni-exec.sh" DEL "$(pod_container_id "$pod")" "$(pod_netns_path "$pod")" >/dev/null 2>&1 ||
        echo "warning: cleanup DEL of $pod failed"
    done
  fi
  for pod in "${ITEST_PODS[@]}"; do
    ip netns delete "$(pod_netns_name "$pod")" 2>/dev/null
  done
  # Host veths whose pod namespace is gone disappear with it; any other
  # leftover with our prefix (test aborted mid-ADD) goes here.
  local veth
  for veth in $(host_veths); do ip link delete "$veth" 2>/dev/null; done
  EBPF_CNI_PURGE=1 "$DEPLOY/down.sh" >/dev/null 2>&1 || echo "warning: down.sh failed"
  rm -rf "$ROOT" "$EBPF_CNI_BPF_DIR"
  local entry
  for entry in "${ITEST_SYSCTLS[@]}"; do sysctl -qw "$entry"; done
  if ((rc == 0)); then
    echo "PASS: $ITEST_CHECKS checks"
  fi
  exit "$rc"
}

log() { echo "[$(date +%T)] $*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# check "description" command...  — runs the command, fails the test if it fails.
check() {
  local what=$1
  shift
  if "$@"; then
    ITEST_CHECKS=$((ITEST_CHECKS + 1))
  else
    fail "$what"
  fi
}
expect_eq() {
  local what=$1 want=$2 got=$3
  [[ $got == "$want" ]] || fail "$what: want '$want', got '$got'"
  ITEST_CHECKS=$((ITEST_CHECKS + 1))
}

node_up() { "$DEPLOY/up.sh"; }
node_down() { "$DEPLOY/down.sh"; }

pod_netns_name() { echo "$TEST_ID-$1"; }
pod_netns_path() { echo "/var/run/netns/$TEST_ID-$1"; }
pod_container_id() { echo "$TEST_ID-$1"; }
pod_result_file() { echo "$ROOT/results/$1.json"; }

# Creates the pod's netns (loopback up). Separate from ADD so tests can
# prepare failure cases.
pod_netns_create() {
  local pod=$1
  ITEST_PODS+=("$pod")
  ip netns add "$(pod_netns_name "$pod")"
  ip -n "$(pod_netns_name "$pod")" link set lo up
}

# CNI ADD through cni-exec.sh (the whole conflist, as a runtime would); the
# result JSON is kept for pod_ip. Fails the test when ADD fails.
pod_add() {
  local pod=$1 out
  shift
  pod_netns_create "$pod"
  mkdir -p "$ROOT/results"
  if ! out=$("$DEPLOY/cni-exec.sh" "$@" ADD "$(pod_container_id "$pod")" "$(pod_netns_path "$pod")"); then
    fail "CNI ADD of $pod failed: $out"
  fi
  printf '%s\n' "$out" >"$(pod_result_file "$pod")"
}

pod_del() {
  local pod=$1 out
  shift
  if ! out=$("$DEPLOY/cni-exec.sh" "$@" DEL "$(pod_container_id "$pod")" "$(pod_netns_path "$pod")"); then
    fail "CNI DEL of $pod failed: $out"
  fi
}

# Address of the pod in family 4 or 6 (from its ADD result), without length.
pod_ip() {
  local pod=$1 family=${2:-4}
  jq -r --arg fam "$family" '.ips[] | select((.address | contains(":")) == ($fam == "6"))
    | .address | split("/")[0]' "$(pod_result_file "$pod")" | head -n1
}

pod_exec() {
  local pod=$1
  shift
  ip netns exec "$(pod_netns_name "$pod")" "$@"
}

ping_ok() {
  local pod=$1 dst=$2
  pod_exec "$pod" ping -c 2 -i 0.2 -W 2 -q "$dst" >/dev/null 2>&1
}

# Starts a one-shot-per-connection TCP server in a pod answering "tcp-ok".
tcp_server_start() {
  local pod=$1 port=$2
  # Not through pod_exec: a function would run in a subshell and $! would be
  # that subshell, not timeout(1). ip netns exec execs without forking.
  ip netns exec "$(pod_netns_name "$pod")" timeout 120 busybox nc -ll -p "$port" -e echo tcp-ok \
    >/dev/null 2>&1 &
  ITEST_BG_PIDS+=($!)
  disown $! # no "Killed" job notice when cleanup stops it
}

# Connects from a pod and expects "tcp-ok"; retries briefly while the
# server starts (bounded: 20 x 0.25s).
tcp_ok() {
  local pod=$1 dst=$2 port=$3 reply
  local host=$dst # bash's /dev/tcp takes bare IPv6 addresses too
  for _ in $(seq 20); do
    reply=$(pod_exec "$pod" timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port && cat <&3" 2>/dev/null || true)
    [[ $reply == tcp-ok ]] && return 0
    sleep 0.25
  done
  return 1
}

# Host-side veths of this test (by prefix).
host_veths() {
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$EBPF_CNI_VETH_PREFIX" || true
}

endpoints_json() { "$PROBE" endpoints "$EBPF_CNI_RUN_DIR/datapath.sock"; }
allocations_json() { "$PROBE" allocations "$EBPF_CNI_RUN_DIR/ipam.sock"; }

endpoint_count() { endpoints_json | jq '.endpoints | length'; }
allocation_count() { allocations_json | jq '.allocations | length'; }

# Host veth of a pod according to the datapath.
pod_host_veth() {
  endpoints_json | jq -r --arg cid "$(pod_container_id "$1")" \
    '.endpoints[] | select(.key.container_id == $cid) | .host_interface_name'
}

# from_pod_packets + to_pod_packets of a pod's endpoint.
pod_packet_count() {
  endpoints_json | jq -r --arg cid "$(pod_container_id "$1")" \
    '.endpoints[] | select(.key.container_id == $cid)
     | (.counters.from_pod_packets | tonumber) + (.counters.to_pod_packets | tonumber)'
}

# Number of the datapath's program attachments (ingress + egress; TCX links
# or clsact filters) on a host interface.
tc_bpf_filter_count() {
  ebpf_cni_hook_programs "$1" | grep -c . || true
}

# Host routes that point at any of this test's veths.
host_routes_to_veths() {
  { ip -4 route show; ip -6 route show; } | grep -E "dev $EBPF_CNI_VETH_PREFIX" || true
}
