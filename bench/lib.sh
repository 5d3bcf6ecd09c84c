# Shared plumbing of the shell benchmarks (sourced, not run): a run's work
# directory and tag, logging, clean-up registered as it goes and run in
# reverse at exit, a watchdog that ends a run through that clean-up before an
# outer timeout could skip it, and a private ebpf-cni node. The measurements
# stay in each benchmark.
#
# A benchmark calls bench_new_run NAME first (it sets work, tag, octet,
# cleanups, bg_pids), registers undo commands in cleanups+=(...) as it
# creates things, and calls from its EXIT trap, in its own order:
# bench_stop_watchdog, bench_stop_background, bench_run_cleanups,
# bench_delete_netns and bench_finish.
# shellcheck shell=bash disable=SC2034 # the variables are the caller's

BENCH_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# bench_new_run NAME: work=/tmp/ebpfcni-NAME.XXXXXX, tag = 5 hex digits
# derived from it (unique per run: the prefix of every netns, veth, chain and
# pin the run creates), octet = 20..219 from the tag (the third octet of the
# run's /24 pools, so two runs rarely collide).
bench_new_run() {
  work=$(mktemp -d "/tmp/ebpfcni-$1.XXXXXX")
  tag=$(printf '%s' "$work" | sha256sum | cut -c1-5)
  octet=$((16#${tag:0:2} % 200 + 20))
  cleanups=()
  bg_pids=()
}

# bench_start_watchdog SECONDS: sends TERM to this script after SECONDS, so
# its EXIT trap cleans up before an outer timeout (ctest's TIMEOUT kills)
# could skip it. The watchdog's sleep dies with it and it holds none of our
# output fds, so it cannot keep a caller's pipe open after we are done.
bench_start_watchdog() {
  local budget=$1
  (
    sleep "$budget" &
    sleeper=$!
    trap 'kill $sleeper 2>/dev/null; exit 0' TERM
    wait $sleeper
    kill -TERM $$
  ) </dev/null >/dev/null 2>&1 &
  watchdog_pid=$!
}
bench_stop_watchdog() { [[ -n ${watchdog_pid:-} ]] && kill "$watchdog_pid" 2>/dev/null; return 0; }

# TERM to every background process recorded in bg_pids (servers).
bench_stop_background() {
  local pid
  for pid in "${bg_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  return 0
}

# bench_run_cleanups TIMEOUT: the registered clean-ups, last first, each in
# its own bash bounded by TIMEOUT seconds; output to $work/cleanup.log.
bench_run_cleanups() {
  local limit=$1 i
  for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do
    log "cleanup: ${cleanups[i]}"
    timeout "$limit" bash -c "${cleanups[i]}" >>"$work/cleanup.log" 2>&1 || log "cleanup failed: ${cleanups[i]}"
  done
}

# bench_delete_netns PREFIX: every network namespace whose name starts with
# PREFIX (the run's tag is in it).
bench_delete_netns() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^$1"); do ip netns del "$ns" 2>/dev/null; done
  return 0
}

# bench_finish STATUS FILE...: copies FILEs that exist to $out_dir (when
# set), removes the work directory on success or says where its logs are,
# and exits with STATUS.
bench_finish() {
  local status=$1 file
  shift
  log "cleanup done"
  if [[ -n ${out_dir:-} ]]; then
    mkdir -p "$out_dir"
    for file in "$@"; do [[ -f $file ]] && cp "$file" "$out_dir/"; done
  fi
  if ((status == 0)); then rm -rf "$work"; else log "logs kept in $work"; fi
  exit "$status"
}

# bench_node_up ROOT NAME VETH_PREFIX POOL [POOL6]: a private ebpf-cni node
# (deploy/local/env.sh ebpf_cni_private_node: files under ROOT, pins under
# /sys/fs/bpf/ebpfcni-NAME) started with up.sh, its purge registered as a
# clean-up (pins removed even if down.sh could not). Exits the benchmark
# with up.sh's log when the node does not come up within 240 s.
bench_node_up() {
  # shellcheck source=../deploy/local/env.sh
  source "$BENCH_REPO_ROOT/deploy/local/env.sh"
  ebpf_cni_private_node "$@"
  cleanups+=("EBPF_CNI_PURGE=1 '$BENCH_REPO_ROOT/deploy/local/down.sh'; rm -rf '$EBPF_CNI_BPF_DIR'")
  log "starting a private ebpf-cni node (deploy/local/up.sh)"
  if ! timeout 240 "$BENCH_REPO_ROOT/deploy/local/up.sh" >"$work/up.log" 2>&1; then
    cat "$work/up.log" >&2
    log "up.sh failed"
    exit 1
  fi
}

# bench_wait_until TRIES INTERVAL COMMAND...: runs COMMAND until it succeeds,
# at most TRIES times INTERVAL seconds apart; fails when it never did.
bench_wait_until() {
  local tries=$1 interval=$2 i
  shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    sleep "$interval"
  done
  return 1
}
