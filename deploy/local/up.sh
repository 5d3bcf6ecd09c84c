#!/usr/bin/env bash
# Brings up an ebpf-cni node on this machine: starts the IPAM, identity and
# datapath daemons, then the policy agent (when built), waits until each
# answers gRPC health checks, installs the CNI binary and writes the
# network's conflist (with "policySocket" when the agent runs, so every new
# pod starts with its identity and NetworkPolicy). Safe to run again: services
# that are already running are left alone (set EBPF_CNI_RESTART=1 to restart
# them), dead ones are started again, files are rewritten atomically.
#
# Settings (environment, defaults in deploy/local/env.sh):
#   EBPF_CNI_BUILD_DIR   build tree holding the binaries (built when missing)
#   EBPF_CNI_BIN_DIR     where ebpf-cni is installed        (/opt/cni/bin)
#   EBPF_CNI_CONF_DIR    where the conflist is written      (/etc/cni/net.d)
#   EBPF_CNI_STATE_DIR   persistent state (ipam.db, ...)     (/var/lib/ebpf-cni)
#   EBPF_CNI_RUN_DIR     sockets and pid files              (/run/ebpf-cni)
#   EBPF_CNI_BPF_DIR     BPF pin directory                  (/sys/fs/bpf/ebpf-cni)
#   EBPF_CNI_LOG_DIR     daemon and CNI logs                ($STATE_DIR/logs)
#   EBPF_CNI_MANIFEST_DIR  the policy agent's Pods, Namespaces and
#                        NetworkPolicies (YAML)             ($STATE_DIR/manifests)
#   EBPF_CNI_POLICY      auto|1|0: run the policy agent     (auto: when built)
#   EBPF_CNI_TC_ATTACH   auto|tcx|clsact: default hook of host veths (auto=clsact)
#   EBPF_CNI_POD_CIDR / EBPF_CNI_POD_CIDR6   pod pools (empty CIDR6: IPv4 only)
#   EBPF_CNI_NETWORK_NAME, EBPF_CNI_VETH_PREFIX, EBPF_CNI_LOG_LEVEL
set -euo pipefail
# shellcheck source=deploy/local/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ebpf_cni_require_root

build_if_missing() {
  local needed=("$(ebpf_cni_cni_binary)" "$EBPF_CNI_PROBE")
  local svc missing=0
  for svc in "${EBPF_CNI_SERVICES[@]}"; do needed+=("$(ebpf_cni_service_binary "$svc")"); done
  for f in "${needed[@]}"; do [[ -x $f ]] || missing=1; done
  ((missing)) || return 0

  ebpf_cni_log "binaries missing in $EBPF_CNI_BUILD_DIR; building"
  command -v cmake >/dev/null || ebpf_cni_die "cmake not found; run tools/setup-deps.sh first"
  if [[ ! -f $EBPF_CNI_BUILD_DIR/CMakeCache.txt ]]; then
    cmake -S "$EBPF_CNI_REPO" -B "$EBPF_CNI_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  fi
  cmake --build "$EBPF_CNI_BUILD_DIR" -j "${EBPF_CNI_BUILD_JOBS:-2}" --target \
    ebpf-cni ebpf-cni-ipam ebpf-cni-datapath ebpf-cni-identity ebpf-cni-grpc-probe
  for f in "${needed[@]}"; do [[ -x $f ]] || ebpf_cni_die "build did not produce $f"; done
  build_policy_agent
}

# The policy agent and its CLI are optional: a tree without them still
# brings up a node (pods are then not isolated). Built along with the rest
# when up.sh has to build anyway, never on its own (a test's up.sh must not
# start a compile).
build_policy_agent() {
  [[ $EBPF_CNI_POLICY == 0 ]] && return 0
  [[ -x $(ebpf_cni_service_binary policy) && -x $EBPF_CNI_CTL ]] && return 0
  [[ -f $EBPF_CNI_BUILD_DIR/CMakeCache.txt ]] || return 0
  cmake --build "$EBPF_CNI_BUILD_DIR" -j "${EBPF_CNI_BUILD_JOBS:-2}" --target ebpf-cni-policy ebpf-cni-ctl >&2 ||
    ebpf_cni_log "warning: could not build the policy agent; NetworkPolicy is not enforced"
}

# Whether this node runs the policy agent.
policy_enabled() {
  case $EBPF_CNI_POLICY in
    0) return 1 ;;
    1) [[ -x $(ebpf_cni_service_binary policy) ]] ||
      ebpf_cni_die "EBPF_CNI_POLICY=1 but $(ebpf_cni_service_binary policy) is not built" ;;
    *) [[ -x $(ebpf_cni_service_binary policy) ]] || return 1 ;;
  esac
  return 0
}

# The datapath pins maps under EBPF_CNI_BPF_DIR; that only works on bpffs.
ensure_bpffs() {
  case $EBPF_CNI_BPF_DIR in
    /sys/fs/bpf | /sys/fs/bpf/*)
      if ! mountpoint -q /sys/fs/bpf; then
        ebpf_cni_log "mounting bpffs on /sys/fs/bpf"
        mount -t bpf bpf /sys/fs/bpf
      fi
      ;;
  esac
}

# Flags each daemon gets. A flag is passed only when the binary defines it
# (absl rejects unknown flags), so services can grow flags independently.
service_flags() {
  local svc=$1 bin=$2 help
  help=$(timeout 10 "$bin" --helpfull 2>&1 || true)
  has() { grep -q -- "--$1[ =]" <<<"$help"; }
  echo "--socket=$(ebpf_cni_socket "$svc")"
  has state_dir && echo "--state_dir=$EBPF_CNI_STATE_DIR"
  has bpf_dir && echo "--bpf_dir=$EBPF_CNI_BPF_DIR"
  # The datapath heartbeats to the identity service so pods keep their
  # identities: this node's socket, never a default one elsewhere.
  has identity_service && echo "--identity_service=$(ebpf_cni_socket identity)"
  has datapath_service && echo "--datapath_service=unix:$(ebpf_cni_socket datapath)"
  has manifest_dir && echo "--manifest_dir=$EBPF_CNI_MANIFEST_DIR"
  has log_level && echo "--log_level=$EBPF_CNI_LOG_LEVEL"
  if [[ $svc == ipam ]]; then
    echo "--pool_cidr=$EBPF_CNI_POD_CIDR"
    echo "--pool_cidr6=$EBPF_CNI_POD_CIDR6"
  fi
  has veth_prefix && echo "--veth_prefix=$EBPF_CNI_VETH_PREFIX"
  # The mode of pods that do not ask (auto = clsact); pods with an egress
  # bandwidth limit always get TCX links (docs/datapath.md, "Attachment").
  has tc_attach && echo "--tc_attach=${EBPF_CNI_TC_ATTACH:-auto}"
  return 0
}

start_service() {
  local svc=$1 bin pid log socket
  bin=$(ebpf_cni_service_binary "$svc")
  socket=$(ebpf_cni_socket "$svc")
  log=$(ebpf_cni_logfile "$svc")

  if pid=$(ebpf_cni_running_pid "$svc"); then
    if [[ ${EBPF_CNI_RESTART:-0} == 1 ]]; then
      ebpf_cni_stop_service "$svc"
    else
      ebpf_cni_log "$svc already running (pid $pid)"
      wait_ready "$svc" "$pid"
      return
    fi
  fi
  # A stale socket from a killed daemon would make readiness look instant.
  rm -f "$socket" "$(ebpf_cni_pidfile "$svc")"

  local flags
  mapfile -t flags < <(service_flags "$svc" "$bin")
  echo "==== $(date -Is) starting: $bin ${flags[*]}" >>"$log"
  # setsid: the daemon must outlive this script and its terminal.
  setsid "$bin" "${flags[@]}" </dev/null >>"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$(ebpf_cni_pidfile "$svc")"
  wait_ready "$svc" "$pid"
  ebpf_cni_log "$svc ready (pid $pid, socket $socket, log $log)"
}

wait_ready() {
  local svc=$1 pid=$2 socket tries
  socket=$(ebpf_cni_socket "$svc")
  tries=$((EBPF_CNI_START_TIMEOUT * 10))
  for ((i = 0; i < tries; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      ebpf_cni_log "$svc exited during startup; last log lines ($(ebpf_cni_logfile "$svc")):"
      tail -n 20 "$(ebpf_cni_logfile "$svc")" >&2 || true
      rm -f "$(ebpf_cni_pidfile "$svc")"
      exit 1
    fi
    if [[ -S $socket ]] && "$EBPF_CNI_PROBE" health "$socket" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  ebpf_cni_log "$svc (pid $pid) not SERVING on $socket after ${EBPF_CNI_START_TIMEOUT}s; last log lines:"
  tail -n 20 "$(ebpf_cni_logfile "$svc")" >&2 || true
  exit 1
}

# Installs the CNI binary the way a package would: copy then rename, so a
# runtime executing the old binary at this moment never sees a partial file.
install_cni_binary() {
  local src dst
  src=$(ebpf_cni_cni_binary)
  dst=$EBPF_CNI_BIN_DIR/ebpf-cni
  install -m 0755 "$src" "$dst.tmp.$$"
  mv -f "$dst.tmp.$$" "$dst"

  # The conflist chains Debian's reference plugins after ours; runtimes look
  # for every plugin in the same CNI_PATH, so make them reachable from
  # BIN_DIR. Links we create are recorded so down.sh removes only those.
  local plugin record=$EBPF_CNI_RUN_DIR/installed-links
  for plugin in portmap bandwidth loopback; do
    if [[ ! -e $EBPF_CNI_BIN_DIR/$plugin && -x /usr/lib/cni/$plugin ]]; then
      ln -s "/usr/lib/cni/$plugin" "$EBPF_CNI_BIN_DIR/$plugin"
      echo "$EBPF_CNI_BIN_DIR/$plugin" >>"$record"
    fi
  done
  [[ -e $EBPF_CNI_BIN_DIR/portmap && -e $EBPF_CNI_BIN_DIR/bandwidth ]] ||
    ebpf_cni_log "warning: portmap/bandwidth plugins not found (install containernetworking-plugins)"
}

write_conflist() {
  local template=$EBPF_CNI_REPO/deploy/local/ebpf-cni.conflist.template
  local tmp=$EBPF_CNI_CONFLIST.tmp.$$
  jq --arg name "$EBPF_CNI_NETWORK_NAME" \
    --arg run_dir "$EBPF_CNI_RUN_DIR" \
    --arg log_file "$EBPF_CNI_LOG_DIR/cni.log" \
    --arg veth_prefix "$EBPF_CNI_VETH_PREFIX" \
    --arg policy_socket "$1" \
    '.name = $name
     | (.plugins[] | select(.type == "ebpf-cni")) |= (
         .runDir = $run_dir | .logFile = $log_file | .hostVethPrefix = $veth_prefix
         | if $policy_socket != "" then .policySocket = $policy_socket else del(.policySocket) end)' \
    "$template" >"$tmp"
  mv -f "$tmp" "$EBPF_CNI_CONFLIST"
}

build_if_missing
mkdir -p "$EBPF_CNI_STATE_DIR" "$EBPF_CNI_RUN_DIR" "$EBPF_CNI_LOG_DIR" "$EBPF_CNI_BIN_DIR" \
  "$EBPF_CNI_CONF_DIR" "$EBPF_CNI_MANIFEST_DIR"
chmod 0750 "$EBPF_CNI_RUN_DIR"
ensure_bpffs
for svc in "${EBPF_CNI_SERVICES[@]}"; do
  start_service "$svc"
done
policy_socket=""
if policy_enabled; then
  start_service policy
  policy_socket=$(ebpf_cni_socket policy)
  # Pods added before the agent has read the manifests would start with
  # fallback labels (fixed moments later, but visible): wait for its sync.
  if [[ -x $EBPF_CNI_CTL ]] &&
    ! ebpf_cni_ctl status --wait --timeout="${EBPF_CNI_START_TIMEOUT}s" >/dev/null 2>"$EBPF_CNI_RUN_DIR/policy-sync.err"; then
    ebpf_cni_log "warning: the policy agent is not in sync yet: $(tail -n 1 "$EBPF_CNI_RUN_DIR/policy-sync.err")"
  fi
  rm -f "$EBPF_CNI_RUN_DIR/policy-sync.err"
else
  # A previous run's agent must not keep enforcing stale state.
  ebpf_cni_stop_service policy
fi
install_cni_binary
write_conflist "$policy_socket"
policy_note="NetworkPolicy not enforced (no policy agent)"
[[ -n $policy_socket ]] && policy_note="NetworkPolicy from $EBPF_CNI_MANIFEST_DIR"
ebpf_cni_log "node up: network '$EBPF_CNI_NETWORK_NAME', conflist $EBPF_CNI_CONFLIST," \
  "CNI binary $EBPF_CNI_BIN_DIR/ebpf-cni, pools ${EBPF_CNI_POD_CIDR:-none} ${EBPF_CNI_POD_CIDR6:-}, $policy_note"
