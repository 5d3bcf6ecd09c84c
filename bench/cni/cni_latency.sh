#!/usr/bin/env bash
# CNI ADD/DEL latency: ebpf-cni side by side with Debian's reference
# bridge + host-local plugins, in the same run on the same machine.
#
# For each plugin it execs the plugin binary exactly as a runtime does
# (CNI_* environment, network config on stdin) against network namespaces it
# creates itself, and times each exec with bash's EPOCHREALTIME (so the
# fork/exec cost is included, equally for both plugins):
#   sequential: COUNT pods, one ADD after another, then one DEL after another
#   concurrent: CONCURRENCY pods ADDed all at once, then DELeted all at once
#   startup:    COUNT VERSION calls (exec and start-up only, no work)
# and prints p50/p95/p99/max per plugin, phase and operation. A few untimed
# ADD/DEL pairs warm the page cache first.
#
# ebpf-cni's node (IPAM, datapath, identity daemons) is started with
# deploy/local/up.sh in private dirs and pools and stopped with down.sh
# (purge) at exit; the plugin config is the ebpf-cni entry of the conflist
# up.sh writes (the chained portmap/bandwidth are not part of the
# comparison, just as bridge runs without them).
#
# Usage: bench/cni/cni_latency.sh [--count N] [--concurrency C]
#          [--plugins bridge,ebpf-cni] [--out DIR] [--smoke]
#          [--ebpf-cni-bin PATH]
#   --smoke      5 sequential, 3 concurrent; exits non-zero on any failed
#                call (used by the bench.cni_latency.smoke CTest test)
#   --out DIR    also writes raw samples (DIR/samples.csv) and the table
#                (DIR/summary.md)
#   --ebpf-cni-bin PATH   time this ebpf-cni binary instead of the one up.sh
#                installed (A/B of a build variant against the same node)
# Environment: EBPF_CNI_BUILD_DIR (default <repo>/build), as for up.sh.
# Root only. Everything it creates carries a run-unique tag and is removed
# at exit, also on failure or Ctrl-C.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source=../lib.sh
source "$REPO_ROOT/bench/lib.sh"

count=100
concurrency=30
plugins=bridge,ebpf-cni
out_dir=
smoke=0
warmup=3
ebpf_cni_override=
while (($#)); do
  case $1 in
    --count) count=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --plugins) plugins=$2; shift 2 ;;
    --out) out_dir=$2; shift 2 ;;
    --ebpf-cni-bin) ebpf_cni_override=$(realpath "$2"); shift 2 ;;
    --smoke) smoke=1; count=5; concurrency=3; warmup=1; shift ;;
    -h | --help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "must run as root" >&2; exit 1; }
# Both pools are /24s: every pod of a phase is up at the same time.
((count + warmup <= 250 && concurrency <= 250)) || { echo "--count/--concurrency must be <= 250" >&2; exit 2; }

bench_new_run bench
netns_prefix="bcni-$tag-"
samples="$work/samples.csv"
echo "plugin,phase,op,pod,ms,ok" >"$samples"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  bench_stop_watchdog
  bench_delete_netns "$netns_prefix"
  bench_run_cleanups 60
  bench_finish "$status" "$samples" "$work/summary.md"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# Ends the run (through the clean-up above) before an outer timeout (ctest's
# TIMEOUT sends SIGKILL) could skip the clean-up.
budget=$((smoke ? 360 : 1800))
bench_start_watchdog "$budget"

# --- plugin set-up: each defines <plugin>_conf (JSON), _bin and _path -------

setup_bridge() {
  local bridge="bbr$tag"
  bridge_bin=/usr/lib/cni/bridge
  bridge_path=/usr/lib/cni
  bridge_conf=$(jq -cn --arg name "bench-$tag" --arg br "$bridge" \
    --arg subnet "10.233.$octet.0/24" --arg data "$work/host-local" '{
      cniVersion:"0.4.0", name:$name, type:"bridge", bridge:$br,
      isGateway:true, ipMasq:false,
      ipam:{type:"host-local", ranges:[[{subnet:$subnet}]], dataDir:$data}}')
  cleanups+=("ip link del $bridge 2>/dev/null; true")
}

setup_ebpf_cni() {
  export EBPF_CNI_BUILD_DIR=${EBPF_CNI_BUILD_DIR:-$REPO_ROOT/build}
  bench_node_up "$work" "bench-$tag" "bc$tag" "10.234.$octet.0/24"
  local conflist
  conflist=$(ls "$EBPF_CNI_CONF_DIR"/*.conflist | head -1)
  ebpf_cni_bin=${ebpf_cni_override:-$EBPF_CNI_BIN_DIR/ebpf-cni}
  ebpf_cni_path="$EBPF_CNI_BIN_DIR"
  ebpf_cni_conf=$(jq -c '.plugins[0] + {cniVersion: .cniVersion, name: .name}' "$conflist")
  [[ $(jq -r .type <<<"$ebpf_cni_conf") == ebpf-cni ]] || { log "first plugin of $conflist is not ebpf-cni"; exit 1; }
}

# --- timing ------------------------------------------------------------------

# cni_call PLUGIN PHASE OP POD : one timed exec of the plugin; appends a
# sample line to $samples (one short write, so concurrent appends are safe).
cni_call() {
  local plugin=$1 phase=$2 op=$3 pod=$4
  local var=${plugin//-/_}
  local bin_var=${var}_bin path_var=${var}_path conf_var=${var}_conf
  local start end ok=1
  start=$EPOCHREALTIME
  CNI_COMMAND=$op CNI_CONTAINERID="bench-$tag-$pod" CNI_NETNS="/run/netns/$netns_prefix$pod" \
    CNI_IFNAME=eth0 CNI_PATH=${!path_var} \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=$pod" \
    "${!bin_var}" <<<"${!conf_var}" >"$work/out.$plugin.$op.$pod" 2>&1 || ok=0
  end=$EPOCHREALTIME
  if ((ok)); then
    rm -f "$work/out.$plugin.$op.$pod"
  else
    mv "$work/out.$plugin.$op.$pod" "$work/failed.$plugin.$op.$pod"
  fi
  printf '%s,%s,%s,%s,%s,%d\n' "$plugin" "$phase" "$op" "$pod" \
    "$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f", (e - s) * 1000}')" "$ok" >>"$samples"
}

make_netns() { ip netns add "$netns_prefix$1"; }
drop_netns() { ip netns del "$netns_prefix$1" 2>/dev/null; }

run_plugin() {
  local plugin=$1 i pods=()
  log "$plugin: warm-up ($warmup untimed ADD/DEL)"
  for ((i = 0; i < warmup; i++)); do
    make_netns "w$i"
    cni_call "$plugin" warmup ADD "w$i"
    cni_call "$plugin" warmup DEL "w$i"
    drop_netns "w$i"
  done

  # Process start-up alone (VERSION: no RPC, no netlink): separates what
  # exec + dynamic linking cost from the work an ADD/DEL does.
  log "$plugin: start-up, $count VERSION calls"
  for ((i = 0; i < count; i++)); do cni_call "$plugin" startup VERSION "v$i"; done

  log "$plugin: sequential, $count pods"
  for ((i = 0; i < count; i++)); do make_netns "s$i"; done
  for ((i = 0; i < count; i++)); do cni_call "$plugin" sequential ADD "s$i"; done
  for ((i = 0; i < count; i++)); do cni_call "$plugin" sequential DEL "s$i"; done
  for ((i = 0; i < count; i++)); do drop_netns "s$i"; done

  log "$plugin: concurrent, $concurrency pods at once"
  for ((i = 0; i < concurrency; i++)); do make_netns "c$i"; done
  local op
  for op in ADD DEL; do
    pods=()
    local batch_start=$EPOCHREALTIME
    for ((i = 0; i < concurrency; i++)); do
      cni_call "$plugin" concurrent "$op" "c$i" &
      pods+=($!)
    done
    # Each call is bounded by the plugin itself; the watchdog below bounds
    # the whole batch.
    # (Its sleep dies with it and it holds none of our output fds, so it
    # cannot keep a caller's pipe open after we are done.)
    (
      sleep 120 &
      sleeper=$!
      trap 'kill $sleeper 2>/dev/null; exit 0' TERM
      wait $sleeper
      kill "${pods[@]}" 2>/dev/null
    ) </dev/null >/dev/null 2>&1 &
    local watchdog=$!
    wait "${pods[@]}"
    kill "$watchdog" 2>/dev/null
    wait "$watchdog" 2>/dev/null
    log "$plugin: concurrent $op batch took $(awk -v s="$batch_start" -v e="$EPOCHREALTIME" 'BEGIN {printf "%.1f", (e - s) * 1000}') ms"
  done
  for ((i = 0; i < concurrency; i++)); do drop_netns "c$i"; done
}

summarize() {
  # Nearest-rank percentiles over successful calls; failures counted apart.
  {
    echo "| plugin | phase | op | calls | failed | p50 ms | p95 ms | p99 ms | max ms |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
    local plugin phase op
    for plugin in ${plugins//,/ }; do
      for phase in startup sequential concurrent; do
        for op in VERSION ADD DEL; do
          awk -F, -v p="$plugin" -v ph="$phase" -v o="$op" '
            $1 == p && $2 == ph && $3 == o { n++; if ($6 == 1) v[++k] = $5; else bad++ }
            function pct(q,   r) { r = int(q / 100 * k + 0.999999); if (r < 1) r = 1; return v[r] }
            END {
              if (n == 0) exit
              # insertion sort: k is at most a few hundred
              for (i = 2; i <= k; i++) { x = v[i]; j = i - 1; while (j > 0 && v[j] > x) { v[j + 1] = v[j]; j-- } v[j + 1] = x }
              if (k == 0) { printf "| %s | %s | %s | %d | %d | - | - | - | - |\n", p, ph, o, n, bad + 0; exit }
              printf "| %s | %s | %s | %d | %d | %.1f | %.1f | %.1f | %.1f |\n", p, ph, o, n, bad + 0, pct(50), pct(95), pct(99), v[k]
            }' "$samples"
        done
      done
    done
  } >"$work/summary.md"
  [[ ,$plugins, == *,ebpf-cni,* ]] && summarize_ebpf_cni_steps >>"$work/summary.md"
  cat "$work/summary.md"
}

# Where a sequential ebpf-cni ADD spends its time, from the plugin's own log:
# each step logs the milliseconds since ADD began (after config parsing),
# see "ADD" in docs/cni-config.md. Identity resolution runs alongside
# IPAM + veth, so the steps overlap; "endpoint created" is ADD's end.
summarize_ebpf_cni_steps() {
  local log_file=${EBPF_CNI_LOG_DIR:-$EBPF_CNI_STATE_DIR/logs}/cni.log
  [[ -f $log_file ]] || return 0
  echo
  echo "ebpf-cni sequential ADD, per step (ms since ADD began in the plugin; from $(basename "$log_file")):"
  echo
  echo "| step done | samples | p50 ms | p95 ms | max ms |"
  echo "|---|---:|---:|---:|---:|"
  local step
  for step in "IPAM gave" "host veth" "security identity" "datapath endpoint"; do
    grep -E "ADD bench-$tag-s[0-9]+/eth0: $step .* at [0-9.]+ ms$" "$log_file" |
      awk -v name="$step" '{ v[++k] = $(NF - 1) }
        function pct(q,   r) { r = int(q / 100 * k + 0.999999); if (r < 1) r = 1; return v[r] }
        END {
          if (k == 0) exit
          for (i = 2; i <= k; i++) { x = v[i]; j = i - 1; while (j > 0 && v[j] > x) { v[j + 1] = v[j]; j-- } v[j + 1] = x }
          printf "| %s | %d | %.1f | %.1f | %.1f |\n", name, k, pct(50), pct(95), v[k]
        }'
  done
}

log "run $tag: count=$count concurrency=$concurrency plugins=$plugins ($(nproc) CPUs, kernel $(uname -r))"
for plugin in ${plugins//,/ }; do
  case $plugin in
    bridge) setup_bridge ;;
    ebpf-cni) setup_ebpf_cni ;;
    *) log "unknown plugin $plugin (bridge, ebpf-cni)"; exit 2 ;;
  esac
done
for plugin in ${plugins//,/ }; do run_plugin "$plugin"; done
summarize

failed=$(awk -F, 'NR > 1 && $6 == 0' "$samples" | wc -l)
if ((failed > 0)); then
  log "$failed calls failed; first failure output:"
  cat "$(ls "$work"/failed.* | head -1)" >&2
  ((smoke)) && exit 1
fi
exit 0
