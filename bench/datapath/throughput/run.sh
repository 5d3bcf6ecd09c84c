#!/usr/bin/env bash
# Datapath throughput between two pods on one node, in one run, for each
# filtering mode (figures: docs/benchmarks.md, "Datapath throughput between
# two pods"):
#   noprog      the routed veth pair the CNI makes, built the same way by
#               hand (ip(8)), with no filtering at all: the baseline
#   ebpf        two pods ADDed through the real CNI on a private node
#               (deploy/local/up.sh), our TC programs on both host veths and
#               ENTRIES policy entries on each endpoint (server: ingress,
#               client: egress; the peer's identity allowed on the bench
#               ports, ENTRIES others that never match), installed with the
#               datapath API ReplaceEndpointPolicy (tput-policy-loader)
#   legacy      the hand-made pair, FORWARD jumping (for the pair's host veths
#   nft         only) to a chain of ENTRIES non-matching rules plus the peer's
#               allow rules at the end: iptables-legacy / iptables-nft
#   legacy-est  the same with "-m conntrack --ctstate ESTABLISHED,RELATED -j
#   nft-est     ACCEPT" first, so only the first packet of a flow walks the list
# and per mode measures, client pod -> server pod:
#   tcp_gbps        TCP throughput, iperf3 (one stream)
#   udp64_kpps      64-byte UDP datagrams the server received per second,
#                   iperf3 -u -l 64 -b 0
#   lat_p50_us      TCP request/response latency, sockperf ping-pong (64 B),
#   lat_p99_us      median and 99th percentile (sockperf reports half the
#                   round trip)
#   conn_per_s      TCP connections per second: connect, one 64 B request and
#                   answer, close, THREADS at a time (tput-conn-rate)
# Every result line carries the 1-minute load average sampled just before it
# (the VM is shared). ROUNDS rounds run every mode in turn; the summary is the
# median over rounds and each mode's ratio to noprog (for latency:
# noprog / mode, so above 1 is better everywhere).
#
# Usage: bench/datapath/throughput/run.sh [--seconds S] [--rounds R]
#          [--entries N] [--threads T] [--modes noprog,ebpf,...]
#          [--wait-load L] [--steady-cpu] [--out DIR] [--smoke]
#   --seconds S    length of each measurement (default 10)
#   --rounds R     rounds over all modes (default 3)
#   --entries N    policy entries / iptables rules (default 10000)
#   --threads T    concurrent connections of the connection-rate test (4)
#   --wait-load L  before each round wait (at most 10 min) until the 1-minute
#                  load average is below L (default: do not wait)
#   --steady-cpu   keep idle CPUs polling instead of halting for the run (a
#                  0 µs CPU latency request on /dev/cpu_dma_latency, dropped
#                  when the run exits): on an idle VM every ping-pong half
#                  otherwise pays a halt and wake-up of the vCPU, which is
#                  bimodal here (36 or 43 µs round trips in either mode) and
#                  buries what filtering costs. Applies to every mode alike.
#   --out DIR      keep results.csv (raw) and summary.md there
#   --smoke        1 s per measurement, 200 entries, one round: what CTest
#                  runs (bench.datapath.throughput.smoke); fails on any error
# Environment: EBPF_CNI_BUILD_DIR (default <repo>/build) holds the daemons,
# the CNI binary, the probe and bench/datapath/throughput/tput-*.
# Root only. Everything it creates carries the run's tag (netns tput-<tag>-*,
# veths tp<tag>*/tc<tag>*, chain TPUT-<tag>, node dirs under the work dir,
# pins /sys/fs/bpf/ebpfcni-tput-<tag>) and is removed at exit, also on
# failure or Ctrl-C; net.ipv4.ip_forward is restored if it had to change.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../../.." && pwd)
# shellcheck source=../../lib.sh
source "$REPO_ROOT/bench/lib.sh"

seconds=10
rounds=3
entries=10000
threads=4
modes=noprog,ebpf,legacy,legacy-est,nft,nft-est
wait_load=
steady_cpu=0
out_dir=
smoke=0
while (($#)); do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --entries) entries=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --wait-load) wait_load=$2; shift 2 ;;
    --steady-cpu) steady_cpu=1; shift ;;
    --out) out_dir=$2; shift 2 ;;
    --smoke) smoke=1; seconds=1; rounds=1; entries=200; shift ;;
    -h | --help) sed -n '2,54p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "must run as root" >&2; exit 1; }
[[ $seconds =~ ^[0-9]+$ && $rounds =~ ^[0-9]+$ && $entries =~ ^[0-9]+$ && $threads =~ ^[0-9]+$ ]] ||
  { echo "--seconds, --rounds, --entries and --threads take whole numbers" >&2; exit 2; }
((seconds >= 1 && seconds <= 120 && rounds >= 1 && rounds <= 20 && entries <= 100000)) ||
  { echo "bounds: 1 <= --seconds <= 120, 1 <= --rounds <= 20, --entries <= 100000" >&2; exit 2; }
for mode in ${modes//,/ }; do
  case $mode in noprog | ebpf | legacy | legacy-est | nft | nft-est) ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
done
[[ ,$modes, == *,noprog,* ]] || { echo "--modes must include noprog (the baseline of every ratio)" >&2; exit 2; }

export EBPF_CNI_BUILD_DIR=${EBPF_CNI_BUILD_DIR:-$REPO_ROOT/build}
CONN_RATE=$EBPF_CNI_BUILD_DIR/bench/datapath/throughput/tput-conn-rate
POLICY_LOADER=$EBPF_CNI_BUILD_DIR/bench/datapath/throughput/tput-policy-loader
PROBE=$EBPF_CNI_BUILD_DIR/integration/netns/ebpf-cni-grpc-probe
for tool in iperf3 sockperf jq ip tc iptables-legacy iptables-nft iptables-legacy-restore iptables-nft-restore; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run tools/setup-deps.sh)" >&2; exit 1; }
done
needed=("$CONN_RATE")
[[ ,$modes, == *,ebpf,* ]] && needed+=("$POLICY_LOADER" "$PROBE")
for bin in "${needed[@]}"; do
  [[ -x $bin ]] || { echo "$bin not built (cmake --build \$EBPF_CNI_BUILD_DIR --target tput-conn-rate tput-policy-loader ebpf-cni-grpc-probe)" >&2; exit 1; }
done

server_cpu=$(($(nproc) - 1))
bench_new_run tput
ns_prefix="tput-$tag-"
chain="TPUT-$tag"
# The hand-made pair and the CNI pool: /24s no route of this host uses yet.
plain_net=10.236.$octet
cni_net=10.237.$octet
plain_gw=$plain_net.1 plain_client=$plain_net.10 plain_server=$plain_net.11
plain_veth_client="tp${tag}c" plain_veth_server="tp${tag}s"
results="$work/results.csv"
echo "round,mode,metric,value,load1,time" >"$results"
failures=0

# The bench ports, the same for every mode and in both the BPF policy and
# the iptables rules.
PORT_IPERF=5201 PORT_SOCKPERF=11111 PORT_CONN=7777
BENCH_PORTS="tcp/$PORT_IPERF,udp/$PORT_IPERF,tcp/$PORT_SOCKPERF,tcp/$PORT_CONN"

load1() { cut -d' ' -f1 /proc/loadavg; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  bench_stop_watchdog
  bench_stop_background
  bench_run_cleanups 120
  bench_delete_netns "$ns_prefix"
  # Nothing of ours may survive: say so loudly if something did.
  local leftovers
  leftovers=$( {
    ip -br link | awk '{print $1}' | grep -E "^(tp|tc)$tag"
    ip netns list | grep "^$ns_prefix"
    iptables-legacy -S 2>/dev/null | grep -- "$chain"
    iptables-nft -S 2>/dev/null | grep -- "$chain"
    ls -d "/sys/fs/bpf/ebpfcni-tput-$tag"
  } 2>/dev/null)
  if [[ -n $leftovers ]]; then
    log "LEFTOVERS after cleanup: $leftovers"
    ((status == 0)) && status=1
  fi
  bench_finish "$status" "$results" "$work/summary.md"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# Watchdog: ends the run through the clean-up above before an outer timeout
# (ctest's TIMEOUT kills) could skip it. Each mode costs about 4 measurements
# plus set-up.
budget=$((smoke ? 360 : rounds * (6 * (4 * (seconds + 5) + 60)) + (${wait_load:+600} + 0) * rounds + 300))
bench_start_watchdog "$budget"

for net in "$plain_net" "$cni_net"; do
  if ip route show | grep -q "^$net\."; then
    log "$net.0/24 is already routed on this host; re-run to get another tag"
    exit 1
  fi
done

# The routing the CNI needs; the hand-made pair relies on it as much.
old_forward=$(sysctl -n net.ipv4.ip_forward)
if [[ $old_forward != 1 ]]; then
  sysctl -qw net.ipv4.ip_forward=1
  cleanups+=("sysctl -qw net.ipv4.ip_forward=$old_forward")
fi

# --- topologies ---------------------------------------------------------------

# The CNI's routed pod network (cni/net/pod_network.h) made with ip(8): pod
# address /32 on eth0, on-link route to the gateway and default via it; the
# gateway /32 on the host veth, forwarding on it, a /32 route to the pod.
plain_pod() {
  local pod=$1 veth=$2 address=$3 ns=$ns_prefix$1
  ip netns add "$ns"
  ip link add "$veth" mtu 1500 type veth peer name eth0 mtu 1500 netns "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$address/32" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add "$plain_gw/32" dev eth0 scope link
  ip -n "$ns" route add default via "$plain_gw" dev eth0
  sysctl -qw "net.ipv4.conf.$veth.forwarding=1"
  ip addr add "$plain_gw/32" dev "$veth"
  ip link set "$veth" up
  ip route replace "$address/32" dev "$veth" scope link
}

setup_plain() {
  log "hand-made routed veth pair: $plain_client -> $plain_server"
  cleanups+=("ip link del $plain_veth_client; ip link del $plain_veth_server; ip netns del ${ns_prefix}pc; ip netns del ${ns_prefix}ps; true")
  plain_pod pc "$plain_veth_client" "$plain_client" && plain_pod ps "$plain_veth_server" "$plain_server" ||
    { log "cannot build the hand-made pair"; exit 1; }
}

cni_identity() {
  "$PROBE" endpoints "$EBPF_CNI_RUN_DIR/datapath.sock" |
    jq -r --arg cid "$1" '.endpoints[] | select(.key.container_id == $cid) | .identity'
}

setup_cni() {
  bench_node_up "$work/node" "tput-$tag" "tc$tag" "$cni_net.0/24"
  local pod
  for pod in cc cs; do
    ip netns add "$ns_prefix$pod"
    # DEL before the node goes down (cleanups run in reverse order).
    cleanups+=("'$REPO_ROOT/deploy/local/cni-exec.sh' --plugin-only DEL tput-$tag-$pod /run/netns/$ns_prefix$pod; ip netns del $ns_prefix$pod")
    if ! "$REPO_ROOT/deploy/local/cni-exec.sh" --plugin-only \
      --args "IgnoreUnknown=1;K8S_POD_NAMESPACE=tput-$tag;K8S_POD_NAME=$pod" \
      ADD "tput-$tag-$pod" "/run/netns/$ns_prefix$pod" >"$work/add.$pod.json" 2>"$work/add.$pod.err"; then
      cat "$work/add.$pod.json" "$work/add.$pod.err" >&2
      log "CNI ADD of $pod failed"
      exit 1
    fi
  done
  cni_client=$(jq -r '.ips[0].address | split("/")[0]' "$work/add.cc.json")
  cni_server=$(jq -r '.ips[0].address | split("/")[0]' "$work/add.cs.json")
  local id_client id_server
  id_client=$(cni_identity "tput-$tag-cc")
  id_server=$(cni_identity "tput-$tag-cs")
  [[ $id_client =~ ^[1-9][0-9]*$ && $id_server =~ ^[1-9][0-9]*$ ]] ||
    { log "pods have no identity (client '$id_client', server '$id_server')"; exit 1; }
  log "CNI pods: $cni_client (identity $id_client) -> $cni_server (identity $id_server)"

  log "installing $entries policy entries on each endpoint (ReplaceEndpointPolicy)"
  local summary
  summary=$("$POLICY_LOADER" --datapath="$EBPF_CNI_RUN_DIR/datapath.sock" --container_id="tput-$tag-cs" \
    --direction=ingress --allow_peer="$id_client" --ports="$BENCH_PORTS" --other_entries="$entries") ||
    { log "policy on the server pod failed"; exit 1; }
  log "server ingress policy: $summary"
  summary=$("$POLICY_LOADER" --datapath="$EBPF_CNI_RUN_DIR/datapath.sock" --container_id="tput-$tag-cc" \
    --direction=egress --allow_peer="$id_server" --ports="$BENCH_PORTS" --other_entries="$entries") ||
    { log "policy on the client pod failed"; exit 1; }
  log "client egress policy: $summary"

  # The numbers only mean something if the programs are there and enforce.
  local veth
  for pod in cc cs; do
    veth=$("$PROBE" endpoints "$EBPF_CNI_RUN_DIR/datapath.sock" |
      jq -r --arg cid "tput-$tag-$pod" '.endpoints[] | select(.key.container_id == $cid) | .host_interface_name')
    [[ $(ebpf_cni_hook_programs "$veth" | grep -c .) == 2 ]] ||
      { log "no BPF program on $veth"; exit 1; }
  done
  # A listener on a port the policy does not name: reachable without our
  # programs, so a failed connection here is the policy's drop.
  ip netns exec "${ns_prefix}cs" timeout 20 "$CONN_RATE" server --listen="$cni_server:9" --threads=1 \
    --max_seconds=15 >>"$work/servers.log" 2>&1 &
  local denied_server=$!
  sleep 0.5
  if ip netns exec "${ns_prefix}cc" timeout 10 "$CONN_RATE" client --connect="$cni_server:9" --threads=1 \
    --seconds=1 --io_timeout_ms=1000 >"$work/denied-port.json" 2>&1; then
    kill "$denied_server" 2>/dev/null
    log "a port the policy does not allow (tcp/9) connected: policy not enforced ($(cat "$work/denied-port.json"))"
    exit 1
  fi
  kill "$denied_server" 2>/dev/null
  wait "$denied_server" 2>/dev/null
  log "tcp/9 (listening, not in the policy) is refused: $(jq -c '{completed, failed_connect}' "$work/denied-port.json")"
}

# --- iptables ----------------------------------------------------------------

# Rules equivalent to the BPF policy: ENTRIES non-matching source addresses
# (198.18.0.0/15, the benchmarking range) on the bench ports, then the
# client's allow rules, so a packet of the bench walks the whole list.
write_iptables_rules() {
  local established=$1 file=$2
  {
    echo "*filter"
    echo ":$chain - [0:0]"
    ((established)) && echo "-A $chain -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    awk -v n="$entries" -v chain="$chain" -v src="$plain_client" -v dst="$plain_server" \
      -v ports="$BENCH_PORTS" 'BEGIN {
      k = split(ports, p, ",")
      for (i = 0; i < n; i++) {
        split(p[i % k + 1], pp, "/")
        printf "-A %s -s 198.%d.%d.%d/32 -d %s/32 -p %s -m %s --dport %s -j ACCEPT\n",
          chain, 18 + int(i / 65536) % 2, int(i / 256) % 256, i % 256, dst, pp[1], pp[1], pp[2]
      }
      for (j = 1; j <= k; j++) {
        split(p[j], pp, "/")
        printf "-A %s -s %s/32 -d %s/32 -p %s -m %s --dport %s -j ACCEPT\n", chain, src, dst, pp[1], pp[1], pp[2]
      }
    }'
    echo "COMMIT"
  } >"$file"
}

# iptables_on FLAVOUR ESTABLISHED: FLAVOUR is legacy or nft.
iptables_on() {
  local flavour=$1 established=$2 file="$work/rules.$1.$2"
  write_iptables_rules "$established" "$file"
  cleanups+=("iptables_off $flavour")
  "iptables-$flavour-restore" --noflush <"$file" || return 1
  # Only the pair's host veths jump to the chain: other traffic on this
  # shared machine never walks it.
  "iptables-$flavour" -I FORWARD 1 -i "$plain_veth_client" -j "$chain" &&
    "iptables-$flavour" -I FORWARD 1 -i "$plain_veth_server" -j "$chain"
}

iptables_off() {
  local flavour=$1
  while "iptables-$flavour" -D FORWARD -i "$plain_veth_client" -j "$chain" 2>/dev/null; do :; done
  while "iptables-$flavour" -D FORWARD -i "$plain_veth_server" -j "$chain" 2>/dev/null; do :; done
  if "iptables-$flavour" -S "$chain" >/dev/null 2>&1; then
    "iptables-$flavour" -F "$chain" && "iptables-$flavour" -X "$chain"
  fi
}
export -f iptables_off
export chain plain_veth_client plain_veth_server

# --- measurements -------------------------------------------------------------

# start_servers NETNS ADDRESS: iperf3, sockperf and tput-conn-rate servers,
# each bounded in time so a killed run cannot leave them behind for long.
start_servers() {
  local ns=$1 address=$2 life=$((budget + 60))
  ip netns exec "$ns" timeout "$life" iperf3 -s -B "$address" -p "$PORT_IPERF" >>"$work/servers.log" 2>&1 &
  bg_pids+=($!)
  # Like iperf3 -A 0,1: the ping-pong's two ends on CPUs of their own (the
  # server on the last CPU, the client on CPU 0), so a round's latency does
  # not depend on whether the scheduler put both on one CPU.
  ip netns exec "$ns" timeout "$life" taskset -c "$server_cpu" sockperf server --tcp -i "$address" \
    -p "$PORT_SOCKPERF" >>"$work/servers.log" 2>&1 &
  bg_pids+=($!)
  ip netns exec "$ns" timeout "$life" "$CONN_RATE" server --listen="$address:$PORT_CONN" \
    --threads="$threads" --max_seconds="$life" >>"$work/servers.log" 2>&1 &
  bg_pids+=($!)
  # Ready when all three listen.
  listening() { (($(ip netns exec "$1" ss -Htln | grep -cE ":($PORT_IPERF|$PORT_SOCKPERF|$PORT_CONN)\b") >= 3)); }
  bench_wait_until 50 0.1 listening "$ns" && return 0
  log "servers in $ns did not start:"
  tail -n 20 "$work/servers.log" >&2
  return 1
}

record() {  # record ROUND MODE METRIC VALUE LOAD
  printf '%s,%s,%s,%s,%s,%(%H:%M:%S)T\n' "$1" "$2" "$3" "$4" "$5" -1 >>"$results"
  log "  $2 $3 = $4 (load $5)"
}

failed() {
  log "  $1 $2 FAILED (details in $work)"
  failures=$((failures + 1))
}

# measure ROUND MODE CLIENT_NETNS SERVER_ADDRESS
measure() {
  local round=$1 mode=$2 ns=$3 server=$4 load out value
  local tag_out="$work/$mode.r$round"
  local bound=$((seconds + 30))
  # iperf3 client and server on different CPUs (the forwarding runs in the
  # sender's softirq): fewer migrations, less run-to-run spread.
  local affinity=()
  (($(nproc) >= 2)) && affinity=(-A 0,1)

  load=$(load1)
  if ip netns exec "$ns" timeout "$bound" iperf3 -c "$server" -p "$PORT_IPERF" "${affinity[@]}" -t "$seconds" --json \
    >"$tag_out.tcp.json" 2>&1 &&
    value=$(jq -e '.end.sum_received.bits_per_second / 1e9 | . * 1000 | round / 1000' "$tag_out.tcp.json"); then
    record "$round" "$mode" tcp_gbps "$value" "$load"
  else
    failed "$mode" tcp_gbps
  fi

  load=$(load1)
  if ip netns exec "$ns" timeout "$bound" iperf3 -c "$server" -p "$PORT_IPERF" "${affinity[@]}" -u -l 64 -b 0 -t "$seconds" \
    --json >"$tag_out.udp.json" 2>&1 &&
    value=$(jq -e '.end.sum | (.packets - .lost_packets) / .seconds / 1000 | . * 10 | round / 10' \
      "$tag_out.udp.json") && [[ $value != 0 ]]; then
    record "$round" "$mode" udp64_kpps "$value" "$load"
  else
    failed "$mode" udp64_kpps
  fi

  load=$(load1)
  if ip netns exec "$ns" timeout "$bound" taskset -c 0 sockperf ping-pong --tcp -i "$server" \
    -p "$PORT_SOCKPERF" -t "$seconds" -m 64 >"$tag_out.sockperf.txt" 2>&1; then
    value=$(sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' "$tag_out.sockperf.txt")
    local p99
    p99=$(sed -n 's/.*percentile 99.000 = *\([0-9.]*\).*/\1/p' "$tag_out.sockperf.txt")
    if [[ -n $value && -n $p99 ]]; then
      record "$round" "$mode" lat_p50_us "$value" "$load"
      record "$round" "$mode" lat_p99_us "$p99" "$load"
    else
      failed "$mode" latency
    fi
  else
    failed "$mode" latency
  fi

  load=$(load1)
  if ip netns exec "$ns" timeout "$bound" "$CONN_RATE" client --connect="$server:$PORT_CONN" \
    --threads="$threads" --seconds="$seconds" >"$tag_out.conn.json" 2>&1 &&
    value=$(jq -e '.rate_per_s | round' "$tag_out.conn.json"); then
    record "$round" "$mode" conn_per_s "$value" "$load"
    local errors
    errors=$(jq '.failed_socket + .failed_connect + .failed_send + .failed_receive' "$tag_out.conn.json")
    ((errors > 0)) && log "  $mode: $errors connections failed ($(cat "$tag_out.conn.json"))"
  else
    failed "$mode" conn_per_s
  fi
}

run_mode() {
  local round=$1 mode=$2
  log "round $round: $mode"
  case $mode in
    noprog) measure "$round" "$mode" "${ns_prefix}pc" "$plain_server" ;;
    ebpf) measure "$round" "$mode" "${ns_prefix}cc" "$cni_server" ;;
    legacy | legacy-est | nft | nft-est)
      local flavour=${mode%-est} established=0
      [[ $mode == *-est ]] && established=1
      local t0=$EPOCHREALTIME
      if ! iptables_on "$flavour" "$established"; then
        failed "$mode" "iptables set-up"
        iptables_off "$flavour"
        return
      fi
      log "  $entries rules loaded with iptables-$flavour-restore in $(awk -v s="$t0" -v e="$EPOCHREALTIME" 'BEGIN {printf "%.1f", e - s}') s"
      measure "$round" "$mode" "${ns_prefix}pc" "$plain_server"
      iptables_off "$flavour"
      ;;
  esac
}

# The awk median of arr[1..n] ("-" when n is 0); sorts arr in place
# (insertion sort: n is the number of rounds).
AWK_MEDIAN='
  function median(arr, n,   i, j, x) {
    for (i = 2; i <= n; i++) { x = arr[i]; j = i - 1; while (j > 0 && arr[j] > x) { arr[j + 1] = arr[j]; j-- } arr[j + 1] = x }
    return n == 0 ? "-" : (n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2)
  }'

# median MODE METRIC: the median over rounds, empty when never measured.
median() {
  awk -F, -v m="$1" -v k="$2" "$AWK_MEDIAN"'
    NR > 1 && $2 == m && $3 == k { v[++n] = $4 }
    END { if (n) print median(v, n) }' "$results"
}

# The issue's targets for our programs, from the medians.
check_targets() {
  echo
  echo "Targets (ebpf with $entries entries per endpoint):"
  echo
  target() {  # target TEXT VALUE MINIMUM
    if [[ -z $2 ]]; then echo "- $1: not measured"; return; fi
    local verdict
    verdict=$(awk -v v="$2" -v min="$3" 'BEGIN {print (v >= min ? "met" : "MISSED")}')
    printf -- '- %s: %.3f (needs >= %s) %s\n' "$1" "$2" "$3" "$verdict"
  }
  ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.4f", a / b}'; }
  local base_tcp base_lat base_conn ebpf_conn flavour
  base_tcp=$(median noprog tcp_gbps) base_lat=$(median noprog lat_p50_us) base_conn=$(median noprog conn_per_s)
  ebpf_conn=$(median ebpf conn_per_s)
  target "TCP throughput / noprog" "$(ratio "$(median ebpf tcp_gbps)" "$base_tcp")" 0.95
  target "latency p50, noprog / ebpf" "$(ratio "$base_lat" "$(median ebpf lat_p50_us)")" 0.95
  target "connections/s / noprog" "$(ratio "$ebpf_conn" "$base_conn")" 0.90
  for flavour in legacy legacy-est nft nft-est; do
    [[ ,$modes, == *,$flavour,* ]] || continue
    target "connections/s / $flavour" "$(ratio "$ebpf_conn" "$(median "$flavour" conn_per_s)")" 5
  done
}

summarize() {
  {
    ((steady_cpu)) && echo "CPUs kept polling when idle (--steady-cpu) for every mode." && echo
    echo "| mode | TCP Gbit/s | UDP 64 B kpps | latency p50 µs | latency p99 µs | connections/s | load (1 min) |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    local mode
    for mode in ${modes//,/ }; do
      awk -F, -v m="$mode" "$AWK_MEDIAN"'
        NR > 1 && $2 == m {
          k = $3; n[k]++; v[k, n[k]] = $4
          if (lmin == "" || $5 < lmin) lmin = $5; if ($5 > lmax) lmax = $5
        }
        END {
          split("tcp_gbps udp64_kpps lat_p50_us lat_p99_us conn_per_s", keys, " ")
          line = "| " m
          for (i = 1; i <= 5; i++) {
            delete a; for (j = 1; j <= n[keys[i]]; j++) a[j] = v[keys[i], j]
            line = line " | " median(a, n[keys[i]])
          }
          print line " | " lmin "–" lmax " |"
        }' "$results"
    done
    echo
    echo "Ratio to noprog (medians; latency as noprog / mode, so > 1 is better in every column):"
    echo
    echo "| mode | TCP | UDP 64 B | latency p50 | latency p99 | connections/s |"
    echo "|---|---:|---:|---:|---:|---:|"
    for mode in ${modes//,/ }; do
      awk -F, -v m="$mode" "$AWK_MEDIAN"'
        NR > 1 && ($2 == m || $2 == "noprog") { k = $2 SUBSEP $3; n[k]++; v[k, n[k]] = $4 }
        END {
          split("tcp_gbps udp64_kpps lat_p50_us lat_p99_us conn_per_s", keys, " ")
          line = "| " m
          for (i = 1; i <= 5; i++) {
            km = m SUBSEP keys[i]; kb = "noprog" SUBSEP keys[i]
            if (!n[km] || !n[kb]) { line = line " | -"; continue }
            delete a; for (j = 1; j <= n[km]; j++) a[j] = v[km, j]; mm = median(a, n[km])
            delete a; for (j = 1; j <= n[kb]; j++) a[j] = v[kb, j]; mb = median(a, n[kb])
            r = (keys[i] ~ /^lat/) ? (mm > 0 ? mb / mm : 0) : (mb > 0 ? mm / mb : 0)
            line = line sprintf(" | %.3f", r)
          }
          print line " |"
        }' "$results"
    done
    echo
    echo "Paired ratio to noprog (median over rounds of each round's own ratio: the two ran minutes apart,"
    echo "so a load swing between rounds cancels out; same orientation):"
    echo
    echo "| mode | TCP | UDP 64 B | latency p50 | latency p99 | connections/s |"
    echo "|---|---:|---:|---:|---:|---:|"
    for mode in ${modes//,/ }; do
      awk -F, -v m="$mode" "$AWK_MEDIAN"'
        NR > 1 && ($2 == m || $2 == "noprog") { v[$1, $2, $3] = $4; rounds[$1] = 1 }
        END {
          split("tcp_gbps udp64_kpps lat_p50_us lat_p99_us conn_per_s", keys, " ")
          line = "| " m
          for (i = 1; i <= 5; i++) {
            n = 0; delete a
            for (r in rounds) {
              if (!((r, m, keys[i]) in v) || !((r, "noprog", keys[i]) in v)) continue
              mm = v[r, m, keys[i]]; mb = v[r, "noprog", keys[i]]
              if (mm <= 0 || mb <= 0) continue
              a[++n] = (keys[i] ~ /^lat/) ? mb / mm : mm / mb
            }
            line = line (n ? sprintf(" | %.3f", median(a, n)) : " | -")
          }
          print line " |"
        }' "$results"
    done
    [[ ,$modes, == *,ebpf,* ]] && check_targets
  } >"$work/summary.md"
  cat "$work/summary.md"
}

if ((steady_cpu)); then
  # The request lives as long as this descriptor: the shell's exit (any
  # exit) closes it and the kernel drops the request.
  exec {cpu_latency_fd}>/dev/cpu_dma_latency ||
    { echo "cannot open /dev/cpu_dma_latency for --steady-cpu" >&2; exit 1; }
  printf 0 >&"$cpu_latency_fd"
fi
log "run $tag: seconds=$seconds rounds=$rounds entries=$entries threads=$threads modes=$modes steady_cpu=$steady_cpu ($(nproc) CPUs, kernel $(uname -r), load $(load1))"
need_plain=0
[[ ,$modes, =~ ,(noprog|legacy|legacy-est|nft|nft-est), ]] && need_plain=1
((need_plain)) && { setup_plain; start_servers "${ns_prefix}ps" "$plain_server" || exit 1; }
if [[ ,$modes, == *,ebpf,* ]]; then
  setup_cni
  start_servers "${ns_prefix}cs" "$cni_server" || exit 1
fi

for ((round = 1; round <= rounds; round++)); do
  if [[ -n $wait_load ]]; then
    waited=0
    while awk -v l="$(load1)" -v max="$wait_load" 'BEGIN {exit !(l >= max)}' && ((waited < 600)); do
      ((waited % 60 == 0)) && log "load $(load1) >= $wait_load; waiting (at most 10 min)"
      sleep 10
      waited=$((waited + 10))
    done
  fi
  # Each round starts one mode further on, so no mode always runs first
  # (right after the set-up) or last.
  mode_list=(${modes//,/ })
  for ((m = 0; m < ${#mode_list[@]}; m++)); do
    run_mode "$round" "${mode_list[(m + round - 1) % ${#mode_list[@]}]}"
  done
done
summarize

if ((failures > 0)); then
  log "$failures measurements failed"
  exit 1
fi
exit 0
