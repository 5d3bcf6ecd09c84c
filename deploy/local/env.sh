# Sourced by up.sh, down.sh, cni-exec.sh and demo.sh: one place for the
# EBPF_CNI_* settings and their defaults, so every script agrees on where a
# node's files live. Override any of them in the environment.
# shellcheck shell=bash disable=SC2034

EBPF_CNI_REPO=${EBPF_CNI_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
EBPF_CNI_BUILD_DIR=${EBPF_CNI_BUILD_DIR:-$EBPF_CNI_REPO/build}
EBPF_CNI_BIN_DIR=${EBPF_CNI_BIN_DIR:-/opt/cni/bin}
EBPF_CNI_CONF_DIR=${EBPF_CNI_CONF_DIR:-/etc/cni/net.d}
EBPF_CNI_STATE_DIR=${EBPF_CNI_STATE_DIR:-/var/lib/ebpf-cni}
EBPF_CNI_RUN_DIR=${EBPF_CNI_RUN_DIR:-/run/ebpf-cni}
EBPF_CNI_BPF_DIR=${EBPF_CNI_BPF_DIR:-/sys/fs/bpf/ebpf-cni}
EBPF_CNI_POD_CIDR=${EBPF_CNI_POD_CIDR-10.244.0.0/24}
# Empty disables IPv6 (note the "-" expansion: set-but-empty stays empty).
EBPF_CNI_POD_CIDR6=${EBPF_CNI_POD_CIDR6-fd00:10:244::/64}
EBPF_CNI_NETWORK_NAME=${EBPF_CNI_NETWORK_NAME:-ebpf-cni}
EBPF_CNI_VETH_PREFIX=${EBPF_CNI_VETH_PREFIX:-ebpf}
EBPF_CNI_LOG_DIR=${EBPF_CNI_LOG_DIR:-$EBPF_CNI_STATE_DIR/logs}
# The policy agent's cluster state: Pods, Namespaces and NetworkPolicies as
# YAML manifests (kubectl's format), reloaded on change.
EBPF_CNI_MANIFEST_DIR=${EBPF_CNI_MANIFEST_DIR:-$EBPF_CNI_STATE_DIR/manifests}
# Start the policy agent (NetworkPolicy enforcement): "auto" = when its
# binary is built, 1 = required, 0 = never (pods are then not isolated).
EBPF_CNI_POLICY=${EBPF_CNI_POLICY:-auto}
EBPF_CNI_LOG_LEVEL=${EBPF_CNI_LOG_LEVEL:-info}
# Seconds to wait for a service to answer health checks / to exit on SIGTERM.
EBPF_CNI_START_TIMEOUT=${EBPF_CNI_START_TIMEOUT:-30}
EBPF_CNI_STOP_TIMEOUT=${EBPF_CNI_STOP_TIMEOUT:-10}

# Start order: the datapath talks to identity from its first second
# (heartbeats), so identity comes up before it; down.sh stops in reverse.
EBPF_CNI_SERVICES=(ipam identity datapath)
# Started after those when built (see EBPF_CNI_POLICY): the policy agent
# follows identities and endpoints from its first second.
EBPF_CNI_OPTIONAL_SERVICES=(policy)
EBPF_CNI_CONFLIST=$EBPF_CNI_CONF_DIR/10-$EBPF_CNI_NETWORK_NAME.conflist
EBPF_CNI_PROBE=$EBPF_CNI_BUILD_DIR/integration/netns/ebpf-cni-grpc-probe
EBPF_CNI_CTL=$EBPF_CNI_BUILD_DIR/tools/ctl/ebpf-cni-ctl

# Path of a service's daemon binary in the build tree.
ebpf_cni_service_binary() {
  echo "$EBPF_CNI_BUILD_DIR/services/$1/ebpf-cni-$1"
}

ebpf_cni_cni_binary() {
  echo "$EBPF_CNI_BUILD_DIR/cni/ebpf-cni"
}

ebpf_cni_socket() { echo "$EBPF_CNI_RUN_DIR/$1.sock"; }
# ebpf-cni-ctl against this node's policy agent.
ebpf_cni_ctl() { "$EBPF_CNI_CTL" --policy_socket="unix:$(ebpf_cni_socket policy)" "$@"; }
ebpf_cni_pidfile() { echo "$EBPF_CNI_RUN_DIR/$1.pid"; }
ebpf_cni_logfile() { echo "$EBPF_CNI_LOG_DIR/$1.log"; }

# Prints the pid recorded for a service when that process is still alive and
# still one of our daemons (a recycled pid must not be signalled).
ebpf_cni_running_pid() {
  local pidfile pid
  pidfile=$(ebpf_cni_pidfile "$1")
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "ebpf-cni-$1 .*--socket=$(ebpf_cni_socket "$1")" || return 1
  echo "$pid"
}

ebpf_cni_log() { echo "[$(basename "$0")] $*" >&2; }
ebpf_cni_die() {
  ebpf_cni_log "error: $*"
  exit 1
}

ebpf_cni_require_root() {
  [[ $(id -u) -eq 0 ]] || ebpf_cni_die "must run as root (creates veths, BPF pins and daemons)"
}

# Stops one service: SIGTERM, bounded wait, then SIGKILL. Removes its pid
# file and socket. Succeeds when it was not running.
ebpf_cni_stop_service() {
  local svc=$1 pid waited=0
  if pid=$(ebpf_cni_running_pid "$svc"); then
    ebpf_cni_log "stopping $svc (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < EBPF_CNI_STOP_TIMEOUT * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      ebpf_cni_log "$svc did not exit within ${EBPF_CNI_STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$(ebpf_cni_pidfile "$svc")" "$(ebpf_cni_socket "$svc")"
}

# The datapath's programs on a host veth, one "<hook>:<program id>" per line
# (hook: ingress = from the pod, egress = to the pod), sorted: its TCX links,
# pinned as $EBPF_CNI_BPF_DIR/links/<ifindex>-<hook>, and its clsact filters,
# whichever way the datapath attached them (--tc_attach; see
# services/datapath/tc_attacher.h). Prints nothing for a missing interface.
# bpftool and tc here only read.
ebpf_cni_hook_programs() {
  local dev=$1 ifindex hook pin
  ifindex=$(cat "/sys/class/net/$dev/ifindex" 2>/dev/null) || return 0
  for hook in ingress egress; do
    pin=$EBPF_CNI_BPF_DIR/links/$ifindex-$hook
    if [[ -e $pin ]]; then
      bpftool -j link show pinned "$pin" 2>/dev/null | jq -r --arg h "$hook" '"\($h):\(.prog_id)"'
    fi
    { tc filter show dev "$dev" "$hook" 2>/dev/null | grep ' bpf ' | grep -o ' id [0-9]*' |
      sed "s/^ id /$hook:/"; } || true  # no filter: grep fails, pipefail would too
  done | sort
}

# Exports the EBPF_CNI_* settings of a private node whose every file lives
# under ROOT (bin, conf, state, run, logs, manifests), BPF pins under
# /sys/fs/bpf/ebpfcni-NAME, network "NAME", veth prefix VETH_PREFIX and pools
# POOL (and POOL6, empty = IPv4 only). Tests and benchmarks run such nodes
# side by side with a real one.
#   usage: ebpf_cni_private_node ROOT NAME VETH_PREFIX POOL [POOL6]
ebpf_cni_private_node() {
  local root=$1 name=$2 veth_prefix=$3 pool=$4 pool6=${5-}
  export EBPF_CNI_BIN_DIR=$root/bin
  export EBPF_CNI_CONF_DIR=$root/conf
  export EBPF_CNI_STATE_DIR=$root/state
  export EBPF_CNI_RUN_DIR=$root/run
  export EBPF_CNI_LOG_DIR=$root/logs
  export EBPF_CNI_MANIFEST_DIR=$root/manifests
  export EBPF_CNI_BPF_DIR=/sys/fs/bpf/ebpfcni-$name
  export EBPF_CNI_NETWORK_NAME=$name
  export EBPF_CNI_VETH_PREFIX=$veth_prefix
  export EBPF_CNI_POD_CIDR=$pool
  export EBPF_CNI_POD_CIDR6=$pool6
  EBPF_CNI_CONFLIST=$EBPF_CNI_CONF_DIR/10-$EBPF_CNI_NETWORK_NAME.conflist
}
