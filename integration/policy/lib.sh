# Shared harness of the NetworkPolicy tests (sourced, not run). Builds on
# integration/netns/lib.sh (private node, pod netns, cleanup) and adds:
#   - a manifest directory the policy agent reads (EBPF_CNI_MANIFEST_DIR);
#   - the cluster: namespaces x, y, z and pods a, b, c in each, written as
#     Namespace/Pod objects, then created through the real CNI binary with
#     K8S_POD_NAMESPACE/K8S_POD_NAME, each running netpol-prober serve;
#   - "ext", a plain network namespace with two addresses outside the pod
#     pool per family (ipBlock peers: NetworkPolicy ipBlock is for non-pod
#     addresses);
#   - both families: pods get an IPv6 address too (the node is dual-stack,
#     EBPF_CNI_POD_CIDR6), and a scenario run with --ipv6 is probed over IPv6
#     as well, ICMP echo included;
#   - policy files applied by atomic rename, waits on the agent's status,
#     `ebpf-cni-ctl policy verify` / `policy trace`.
# shellcheck shell=bash disable=SC2034
source "$(dirname "${BASH_SOURCE[0]}")/../netns/lib.sh"

PROBER=${NETPOL_PROBER:-$EBPF_CNI_BUILD_DIR/integration/policy/netpol-prober}
CTL=${EBPF_CNI_CTL:-$EBPF_CNI_BUILD_DIR/tools/ctl/ebpf-cni-ctl}
NETPOL_NAMESPACES=(x y z)
NETPOL_POD_NAMES=(a b c)
NETPOL_PODS=()           # "x/a" ... (namespace/name)
declare -gA NETPOL_IP=()  # "x/a" -> IPv4 address; also ext1, ext2, host
declare -gA NETPOL_IP6=() # the same names -> IPv6 address (dual-stack node)
NETPOL_EXT_NETNS=""
NETPOL_WAIT_S=${NETPOL_WAIT_S:-20}
NETPOL_OBJECTS=0         # Pods + Namespaces in 00-cluster.yaml (status sanity check)

# netpol_init NAME NUMBER: itest_init plus the manifest directory and the
# policy tools. NUMBER (1-99) picks the pools and veth prefix as in lib.sh.
netpol_init() {
  itest_init "$1" "$2"
  # lib.sh's prefix "ix<number>" would make ix51.. start with ix5, the
  # prefix of test number 5, whose cleanup removes every "ix5*" veth. "np"
  # is used by these tests only.
  export EBPF_CNI_VETH_PREFIX=np$2
  log "veth prefix $EBPF_CNI_VETH_PREFIX (instead), manifests $ROOT/manifests"
  export EBPF_CNI_MANIFEST_DIR=$ROOT/manifests
  mkdir -p "$EBPF_CNI_MANIFEST_DIR" "$ROOT/tmp"
  NETPOL_NUMBER=$2
  [[ -x $PROBER ]] || fail "prober $PROBER not built (target netpol-prober)"
  # Our cleanup runs first, then lib.sh's with the original exit status.
  # shellcheck disable=SC2154 # netpol_rc is set inside the trap
  trap 'netpol_rc=$?; netpol_cleanup; (exit $netpol_rc); itest_cleanup' EXIT
  # A test stopped by a signal (ctest timeout, ^C) still cleans up: bash
  # runs the EXIT trap only when the signal is trapped.
  trap 'exit 143' TERM
  trap 'exit 130' INT
}

# Runs before lib.sh's cleanup, which DELs attached pods one by one
# (minutes for hundreds of pods on a loaded VM):
#   - up to NETPOL_DEL_LIMIT (50) attached pods: real DELs, 8 at a time;
#   - more (churn, benchmark): their namespaces are deleted (the veths, and
#     with them the TC programs and host routes, go too) and their cached
#     ADD results dropped, then lib.sh's down.sh purge removes the node's
#     state and pins. None of these pods has port mappings, so no chained
#     plugin has host state a DEL would have removed.
# The ext namespace is in ITEST_PODS; its veth goes with it.
netpol_cleanup() {
  set +e
  local pod attached=() i pids=()
  for pod in "${ITEST_PODS[@]}"; do
    [[ -f $(netpol_cni_cache_file "$pod") ]] && attached+=("$pod")
  done
  ((${#attached[@]} > 8)) || return 0
  if ((${#attached[@]} > ${NETPOL_DEL_LIMIT:-50})); then
    log "cleanup: removing ${#attached[@]} pods without DEL (no host state beyond the node's)"
    for pod in "${attached[@]}"; do
      ip netns delete "$(pod_netns_name "$pod")" 2>/dev/null
      rm -f "$(netpol_cni_cache_file "$pod")"
    done
    return 0
  fi
  EBPF_CNI_START_TIMEOUT=10 timeout 60 "$DEPLOY/up.sh" >/dev/null 2>&1
  for ((i = 0; i < ${#attached[@]}; i++)); do
    pod=${attached[i]}
    timeout 20 "$DEPLOY/cni-exec.sh" DEL "$(pod_container_id "$pod")" "$(pod_netns_path "$pod")" \
      >/dev/null 2>&1 &
    pids+=($!)
    if ((${#pids[@]} == 8)); then
      wait "${pids[@]}"
      pids=()
    fi
  done
  ((${#pids[@]} == 0)) || wait "${pids[@]}"
  return 0
}
netpol_cni_cache_file() {
  echo "$EBPF_CNI_STATE_DIR/cni-results/$EBPF_CNI_NETWORK_NAME-$(pod_container_id "$1")-eth0.json"
}

# True when this node runs the policy agent and the CLI exists.
policy_agent_available() {
  [[ -S $EBPF_CNI_RUN_DIR/policy.sock && -x $CTL ]]
}

ctl() { "$CTL" --socket="$EBPF_CNI_RUN_DIR/policy.sock" "$@"; }

# ---------------------------------------------------------------- cluster ----

# Labels: namespaces ns=<name>, x and y also env=prod/dev (z has no env);
# pods pod=<name>, a tier=web, b tier=db (c has no tier), so selectors can
# test In/NotIn/Exists/DoesNotExist. Container ports: serve-<port>-<proto>
# for 80/81 TCP/UDP on every pod, and "http" = 80/TCP on a, 81/TCP on b and
# none on c, so a named port resolves differently per destination pod.
netpol_namespace_labels() {
  case $1 in
    x) echo "ns: x, env: prod" ;;
    y) echo "ns: y, env: dev" ;;
    z) echo "ns: z" ;;
  esac
}
netpol_pod_labels() {
  case $1 in
    a) echo "pod: a, tier: web" ;;
    b) echo "pod: b, tier: db" ;;
    c) echo "pod: c" ;;
    *) echo "pod: $1" ;;
  esac
}
netpol_pod_http_port() {
  case $1 in
    a) echo 80 ;;
    b) echo 81 ;;
  esac
}

# Writes a file into the manifest directory atomically (temp name outside
# the watched directory, then rename), from stdin.
manifest_write() {
  local name=$1 tmp
  tmp=$(mktemp "$ROOT/tmp/$name.XXXXXX")
  cat >"$tmp"
  mv -f "$tmp" "$EBPF_CNI_MANIFEST_DIR/$name"
}
manifest_remove() { rm -f "$EBPF_CNI_MANIFEST_DIR/$1"; }

# Pod object of namespace $1, name $2 (labels from netpol_pod_labels unless
# $3 gives them), for the manifest directory.
netpol_pod_yaml() {
  local ns=$1 name=$2 labels=${3:-$(netpol_pod_labels "$2")} http
  http=$(netpol_pod_http_port "$name")
  cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: $ns
  labels: {$labels}
spec:
  containers:
  - name: serve
    image: netpol-prober
    ports:
    - {name: serve-80-tcp, containerPort: 80, protocol: TCP}
    - {name: serve-81-tcp, containerPort: 81, protocol: TCP}
    - {name: serve-80-udp, containerPort: 80, protocol: UDP}
    - {name: serve-81-udp, containerPort: 81, protocol: UDP}
EOF
  [[ -n $http ]] && echo "    - {name: http, containerPort: $http, protocol: TCP}"
  return 0
}

netpol_write_cluster_manifest() {
  local ns pod
  NETPOL_OBJECTS=$((${#NETPOL_NAMESPACES[@]} * (1 + ${#NETPOL_POD_NAMES[@]})))
  {
    for ns in "${NETPOL_NAMESPACES[@]}"; do
      printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels: {%s}\n' \
        "$ns" "$(netpol_namespace_labels "$ns")"
    done
    for ns in "${NETPOL_NAMESPACES[@]}"; do
      for pod in "${NETPOL_POD_NAMES[@]}"; do netpol_pod_yaml "$ns" "$pod"; done
    done
  } | manifest_write 00-cluster.yaml
}

# lib.sh pod name of namespace/name ("x/a" -> "x-a").
netpol_lib_pod() { echo "${1/\//-}"; }

# CNI ADD of many pods ("ns/name" arguments), 8 at a time as a kubelet
# would run them; the netns is created in this shell so cleanup knows it.
# Records NETPOL_IP. Fails the test on the first failed ADD.
netpol_pods_add_parallel() {
  local pods=("$@") i j pids pod ns name k
  mkdir -p "$ROOT/results"
  for ((i = 0; i < ${#pods[@]}; i += 8)); do
    pids=()
    for ((j = i; j < i + 8 && j < ${#pods[@]}; j++)); do
      ns=${pods[j]%/*} name=${pods[j]#*/} pod=$(netpol_lib_pod "${pods[j]}")
      pod_netns_create "$pod"
      "$DEPLOY/cni-exec.sh" --args "IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$name" \
        ADD "$(pod_container_id "$pod")" "$(pod_netns_path "$pod")" >"$(pod_result_file "$pod")" \
        2>"$ROOT/add-$pod.err" &
      pids+=($!)
    done
    for k in "${!pids[@]}"; do
      wait "${pids[k]}" || fail "CNI ADD of ${pods[i + k]} failed: $(cat "$ROOT/add-$(netpol_lib_pod "${pods[i + k]}").err") $(cat "$(pod_result_file "$(netpol_lib_pod "${pods[i + k]}")")")"
    done
  done
  for pod in "${pods[@]}"; do
    NETPOL_IP[$pod]=$(pod_ip "$(netpol_lib_pod "$pod")" 4)
    [[ -n ${NETPOL_IP[$pod]} ]] || fail "no IPv4 address for $pod"
    if [[ -n ${EBPF_CNI_POD_CIDR6:-} ]]; then
      NETPOL_IP6[$pod]=$(pod_ip "$(netpol_lib_pod "$pod")" 6)
      [[ -n ${NETPOL_IP6[$pod]} ]] || fail "no IPv6 address for $pod on a dual-stack node"
    fi
  done
}

# Starts netpol-prober serve (TCP+UDP echo on 80 and 81) in a netns and
# waits until it has bound every socket.
netpol_serve() {
  local netns_path=$1 label=$2 out=$ROOT/serve-$2.out
  "$PROBER" serve --netns="$netns_path" --ports=80,81 --duration_s=1800 >"$out" 2>&1 &
  ITEST_BG_PIDS+=($!)
  disown $!
  for _ in $(seq 100); do
    grep -q '^ready' "$out" 2>/dev/null && return 0
    sleep 0.05
  done
  fail "prober server in $label not ready: $(cat "$out")"
}

# ext: a netns outside the pod network, connected to the host by a veth,
# holding ext1 = 10.98.N.2 (primary) and ext2 = 10.98.N.3. The host routes
# 10.98.N.0/24 to it; it routes the pod pool back through the host. On a
# dual-stack node also ext1 = fd00:98:N::2, ext2 = fd00:98:N::3 (host
# fd00:98:N::1), without DAD so they are usable at once.
netpol_ext_create() {
  local n=$NETPOL_NUMBER host_if=${EBPF_CNI_VETH_PREFIX}ext peer=${EBPF_CNI_VETH_PREFIX}extp
  NETPOL_EXT_NETNS=$(pod_netns_name ext)
  pod_netns_create ext # registered in ITEST_PODS: removed by cleanup
  ip link add "$host_if" type veth peer name "$peer"
  ip link set "$peer" netns "$NETPOL_EXT_NETNS"
  ip addr add "10.98.$n.1/24" dev "$host_if"
  ip link set "$host_if" up
  ip -n "$NETPOL_EXT_NETNS" addr add "10.98.$n.2/24" dev "$peer"
  ip -n "$NETPOL_EXT_NETNS" addr add "10.98.$n.3/24" dev "$peer"
  ip -n "$NETPOL_EXT_NETNS" link set "$peer" up
  ip -n "$NETPOL_EXT_NETNS" route add "$EBPF_CNI_POD_CIDR" via "10.98.$n.1"
  NETPOL_IP[ext1]=10.98.$n.2
  NETPOL_IP[ext2]=10.98.$n.3
  NETPOL_IP[host]=10.98.$n.1
  if [[ -n ${EBPF_CNI_POD_CIDR6:-} ]]; then
    ip addr add "fd00:98:$n::1/64" dev "$host_if" nodad
    ip -n "$NETPOL_EXT_NETNS" addr add "fd00:98:$n::2/64" dev "$peer" nodad
    ip -n "$NETPOL_EXT_NETNS" addr add "fd00:98:$n::3/64" dev "$peer" nodad
    ip -n "$NETPOL_EXT_NETNS" route add "$EBPF_CNI_POD_CIDR6" via "fd00:98:$n::1"
    NETPOL_IP6[ext1]=fd00:98:$n::2
    NETPOL_IP6[ext2]=fd00:98:$n::3
    NETPOL_IP6[host]=fd00:98:$n::1
  fi
  netpol_serve "$(pod_netns_path ext)" ext
  # The node resolves both IPv6 addresses once, with time to spare: the
  # kernel joins an address's solicited-node group a moment after adding
  # it, and a solicitation sent before that is retried only after 1 s,
  # longer than a probe waits.
  if [[ -n ${EBPF_CNI_POD_CIDR6:-} ]]; then
    local out
    out=$("$PROBER" probe --timeout_ms=3000 <<<"ext1 - ${NETPOL_IP6[ext1]} 80 tcp
ext2 - ${NETPOL_IP6[ext2]} 80 tcp")
    [[ $(grep -c '^ext. ok' <<<"$out") == 2 ]] || fail "the node cannot reach ext over IPv6: $out"
  fi
}

# The whole cluster: manifest first (so ADD finds the Pod objects), then the
# pods through the CNI, their servers, and ext.
netpol_cluster_up() {
  local ns name
  NETPOL_PODS=()
  for ns in "${NETPOL_NAMESPACES[@]}"; do
    for name in "${NETPOL_POD_NAMES[@]}"; do NETPOL_PODS+=("$ns/$name"); done
  done
  netpol_write_cluster_manifest
  if policy_agent_available; then
    policy_wait_source_counts "$NETPOL_OBJECTS" "${#NETPOL_NAMESPACES[@]}" 0 # known before any ADD
  fi
  local pod
  netpol_pods_add_parallel "${NETPOL_PODS[@]}"
  for pod in "${NETPOL_PODS[@]}"; do
    netpol_serve "$(pod_netns_path "$(netpol_lib_pod "$pod")")" "$(netpol_lib_pod "$pod")"
  done
  netpol_ext_create
  log "cluster up: $(for p in "${NETPOL_PODS[@]}"; do printf '%s=%s ' "$p" "${NETPOL_IP[$p]}"; done)ext1=${NETPOL_IP[ext1]} ext2=${NETPOL_IP[ext2]}"
  [[ -z ${NETPOL_IP6[ext1]:-} ]] ||
    log "IPv6: $(for p in "${NETPOL_PODS[@]}"; do printf '%s=%s ' "$p" "${NETPOL_IP6[$p]}"; done)ext1=${NETPOL_IP6[ext1]} ext2=${NETPOL_IP6[ext2]}"
}

# -------------------------------------------------------- agent status ----

# The agent's status as JSON (printed also when not in sync, which the ctl
# signals with a non-zero exit; callers look at the fields).
policy_status_json() { ctl status --json 2>/dev/null || true; }

# Waits until the agent's source knows exactly PODS+NAMESPACES objects and
# POLICIES NetworkPolicies (first argument counts pods+namespaces together as
# a sanity bound) and the kernel has the compiled state on every endpoint.
policy_wait_source_counts() {
  local objects=$1 namespaces=$2 policies=$3 json deadline
  deadline=$((SECONDS + NETPOL_WAIT_S))
  while ((SECONDS < deadline)); do
    json=$(policy_status_json)
    if jq -e --argjson o "$objects" --argjson n "$namespaces" \
      --argjson p "$policies" '
        (.source.synced == true)
        and ((.source.pods // 0) + (.source.namespaces // 0) >= $o)
        and ((.source.namespaces // 0) >= $n)
        and ((.source.network_policies // 0) == $p)
        and ((.source.errors // []) | length == 0)
        and ((.compiled_generation // "0") | tonumber) == ((.applied_generation // "0") | tonumber)
        and ((.endpoints_pending // 0) == 0)' >/dev/null <<<"$json"; then
      return 0
    fi
    sleep 0.05
  done
  fail "policy agent did not reach $policies policies / $objects objects in sync within ${NETPOL_WAIT_S}s: ${json:-no status}"
}

policy_generation() { policy_status_json | jq -r '.compiled_generation // "0"'; }

# Waits for the agent to pick up a manifest change: compiled generation past
# BEFORE ("-": the change compiles to nothing new, do not wait for a
# generation), POLICIES NetworkPolicies known, kernel in sync.
policy_wait_applied() {
  local before=$1 policies=$2
  if [[ $before != - ]]; then
    ctl status --wait --min_generation="$before" --timeout="${NETPOL_WAIT_S}s" >/dev/null 2>&1 ||
      log "note: compiled generation did not move past $before within ${NETPOL_WAIT_S}s"
  fi
  policy_wait_source_counts "$NETPOL_OBJECTS" "${#NETPOL_NAMESPACES[@]}" "$policies"
}

# Writes the scenario file (or removes it when CONTENT is empty) and waits
# until the agent has it in the kernel. Unchanged content is not waited
# for: it compiles to nothing new.
policy_apply_file() {
  local file=$1 content=$2 policies=$3 path=$EBPF_CNI_MANIFEST_DIR/$1 before
  before=$(policy_generation)
  if [[ -z $content ]]; then
    [[ -e $path ]] || before=-
    manifest_remove "$file"
  else
    [[ -e $path && $(<"$path") == "$(printf '%s' "$content")" ]] && before=-
    manifest_write "$file" <<<"$content"
  fi
  policy_wait_applied "$before" "$policies"
}

# `ebpf-cni-ctl policy verify` must report no mismatch (it exits non-zero
# when there is one; the JSON says which).
policy_verify_clean() {
  local out
  out=$(ctl policy verify --json 2>&1) || true
  if ! jq -e . >/dev/null 2>&1 <<<"$out"; then
    echo "policy verify failed: $out" >&2
    return 1
  fi
  if ! jq -e '(.mismatches // []) | length == 0' >/dev/null <<<"$out"; then
    echo "policy verify reports kernel != compiled state:" >&2
    jq -c '.mismatches[]' <<<"$out" >&2
    return 1
  fi
}

# ------------------------------------------------------- reachability ----
# A cell is "SRC DST PORT/PROTO", e.g. "x/a y/b 80/tcp", probed over one IP
# family at a time (MATRIX_FAMILY, 4 or 6). Sources: every pod, the node
# ("host": pods cannot block their node, k8s docs "Network Policies",
# exceptions in the list of entities) and ext1/ext2 (non-pod addresses, for
# ipBlock). Destinations: every pod and ext1/ext2. Scenarios run with
# --ipv6 probe both families and ICMP echo too ("ping/icmp": NetworkPolicy
# ports name TCP/UDP/SCTP only, so only a rule without ports allows it).
NETPOL_PORTS=(80/tcp 80/udp 81/tcp 81/udp)
NETPOL_ICMP_PORT=ping/icmp
MATRIX_FAMILY=4
MATRIX_ICMP=0
declare -gA MATRIX_GOT=() MATRIX_DETAIL=()

matrix_sources() { printf '%s\n' "${NETPOL_PODS[@]}" host ext1 ext2; }
matrix_destinations() {
  local src=$1
  printf '%s\n' "${NETPOL_PODS[@]}"
  [[ $src == */* ]] && printf '%s\n' ext1 ext2 # pods -> outside addresses
  return 0
}

# prober input line for one cell (label = cell with '|' for spaces). No
# command substitutions: this runs for every cell of every scenario.
matrix_probe_line() {
  local src=$1 dst=$2 pp=$3 netns source_ip="" dst_ip port=${3%/*}
  if ((MATRIX_FAMILY == 6)); then dst_ip=${NETPOL_IP6[$dst]}; else dst_ip=${NETPOL_IP[$dst]}; fi
  case $src in
    host) netns=- ;;
    ext1 | ext2)
      netns=/var/run/netns/$TEST_ID-ext
      if ((MATRIX_FAMILY == 6)); then source_ip=${NETPOL_IP6[$src]}; else source_ip=${NETPOL_IP[$src]}; fi
      ;;
    *) netns=/var/run/netns/$TEST_ID-${src/\//-} ;;
  esac
  [[ $port == +([0-9]) ]] || port=0 # ping/icmp: no port
  echo "$src|$dst|$pp $netns $dst_ip $port ${pp#*/} $source_ip"
}

# Probes the given cells (stdin, one "SRC DST PP" per line) and records
# MATRIX_GOT[cell] = allow|deny (allow = the echo came back).
matrix_probe_cells() {
  local lines label result detail
  lines=$(while read -r src dst pp; do matrix_probe_line "$src" "$dst" "$pp"; done)
  while read -r label result detail; do
    local cell=${label//|/ }
    MATRIX_DETAIL[$cell]="$result $detail"
    if [[ $result == ok ]]; then MATRIX_GOT[$cell]=allow; else MATRIX_GOT[$cell]=deny; fi
  done < <("$PROBER" probe --timeout_ms="${NETPOL_TIMEOUT_MS:-400}" <<<"$lines")
}

matrix_all_cells() {
  local src dst pp ports=("${NETPOL_PORTS[@]}")
  ((MATRIX_ICMP)) && ports+=("$NETPOL_ICMP_PORT")
  while read -r src; do
    while read -r dst; do
      for pp in "${ports[@]}"; do echo "$src $dst $pp"; done
    done < <(matrix_destinations "$src")
  done < <(matrix_sources)
}

# ---------------------------------------------------- expected matrix ----
# The expected matrix of a scenario is written by hand, from the Kubernetes
# documentation, as a default plus ordered exceptions; the last matching
# exception wins:
#   expect_default allow|deny
#   expect allow|deny SRC_GLOB DST_GLOB [PORT_GLOB [FAMILY_GLOB]]
# Globs are bash patterns over "ns/pod", host, ext1, ext2, "80/tcp"... and
# "ping/icmp", and the family 4 or 6 (extglob on: '@(x|y)/a', '[xy]/*').
# NetworkPolicy is family-blind except for ipBlock CIDRs, so only ipBlock
# scenarios need a family. Two facts of the docs hold in every
# scenario and are applied after the scenario's own lines: a pod cannot
# block access to itself, and traffic from the node where a pod runs is
# always allowed (docs "Network Policies", the list of entities a pod can
# talk to).
shopt -s extglob
EXPECT_DEFAULT=allow
EXPECT_VERDICT=() EXPECT_SRC=() EXPECT_DST=() EXPECT_PP=() EXPECT_FAMILY=()
expect_default() {
  EXPECT_DEFAULT=$1
  EXPECT_VERDICT=() EXPECT_SRC=() EXPECT_DST=() EXPECT_PP=() EXPECT_FAMILY=()
}
expect() {
  [[ $1 == allow || $1 == deny ]] || fail "expect: verdict must be allow or deny, got '$1'"
  EXPECT_VERDICT+=("$1") EXPECT_SRC+=("$2") EXPECT_DST+=("$3") EXPECT_PP+=("${4:-*}")
  EXPECT_FAMILY+=("${5:-*}")
}

# Sets EXPECTED (allow|deny) for one cell; a variable, not output, so the
# caller needs no subshell per cell.
expected_verdict() {
  local src=$1 dst=$2 pp=$3 i
  if [[ $src == "$dst" || $src == host ]]; then
    EXPECTED=allow
    return
  fi
  for ((i = ${#EXPECT_VERDICT[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2053 # globs on purpose
    if [[ $src == ${EXPECT_SRC[i]} && $dst == ${EXPECT_DST[i]} && $pp == ${EXPECT_PP[i]} &&
      $MATRIX_FAMILY == ${EXPECT_FAMILY[i]} ]]; then
      EXPECTED=${EXPECT_VERDICT[i]}
      return
    fi
  done
  EXPECTED=$EXPECT_DEFAULT
}

# Probes every cell, compares with the expected matrix and prints the cells
# that differ. A differing cell is probed once more (with a longer timeout)
# before it counts, so a probe starved of CPU on a loaded machine is not
# reported as a policy bug; cells that needed it are logged. Returns 1 when
# cells still differ.
MATRIX_CELLS=0
matrix_check() {
  local cells cell want diffs=() retry=() src dst pp
  MATRIX_GOT=()
  MATRIX_DETAIL=()
  cells=$(matrix_all_cells)
  matrix_probe_cells <<<"$cells"
  MATRIX_CELLS=0
  declare -gA MATRIX_WANT=()
  while read -r src dst pp; do
    cell="$src $dst $pp"
    expected_verdict "$src" "$dst" "$pp"
    want=$EXPECTED
    MATRIX_WANT[$cell]=$want
    MATRIX_CELLS=$((MATRIX_CELLS + 1))
    [[ ${MATRIX_GOT[$cell]:-missing} == "$want" ]] || retry+=("$cell")
  done <<<"$cells"
  if ((${#retry[@]} > 0)); then
    NETPOL_TIMEOUT_MS=1000 matrix_probe_cells < <(printf '%s\n' "${retry[@]}")
    for cell in "${retry[@]}"; do
      if [[ ${MATRIX_GOT[$cell]:-missing} == "${MATRIX_WANT[$cell]}" ]]; then
        log "note: IPv$MATRIX_FAMILY cell '$cell' matched only on the second probe"
      else
        diffs+=("$cell")
      fi
    done
  fi
  if ((${#diffs[@]} > 0)); then
    echo "  ${#diffs[@]} of $MATRIX_CELLS IPv$MATRIX_FAMILY cells differ (source destination port/proto: expected, got [probe result]):"
    for cell in "${diffs[@]}"; do
      printf '    %-22s expected %-5s got %-5s [%s]\n' "$cell" "${MATRIX_WANT[$cell]}" \
        "${MATRIX_GOT[$cell]:-missing}" "${MATRIX_DETAIL[$cell]:-}"
    done
    return 1
  fi
  return 0
}

# ---------------------------------------------- neighbours, connections ----

# Neighbour discovery through an isolated pod: forgets the neighbours on both
# sides of POD's veth (the node's entry for the pod, the pod's entry for its
# gateway), sends one probe from the node (always allowed), which needs
# neighbour solicitations and advertisements in both directions of the
# pod's programs, and requires the node to have a usable entry for the pod's
# address of FAMILY afterwards. NDP is ICMPv6 (types 133-137), which the
# datapath passes before any policy; if it did not, an isolated pod could
# reach nothing at all.
neighbour_discovery_check() {
  local pod=$1 family=${2:-6} netns veth ip state
  netns=$(pod_netns_name "$(netpol_lib_pod "$pod")")
  veth=$(pod_host_veth "$(netpol_lib_pod "$pod")")
  if [[ $family == 6 ]]; then ip=${NETPOL_IP6[$pod]}; else ip=${NETPOL_IP[$pod]}; fi
  [[ -n $veth && -n $ip ]] || { echo "  no veth/address for $pod"; return 1; }
  ip -"$family" neigh flush dev "$veth"
  ip -n "$netns" -"$family" neigh flush dev eth0
  state=$(ip -"$family" neigh show "$ip" dev "$veth")
  [[ -z $state || $state == *FAILED* || $state == *NOARP* ]] ||
    { echo "  the node's neighbour entry for $pod survived the flush: $state"; return 1; }
  local result
  result=$("$PROBER" probe --timeout_ms=2000 <<<"nd - $ip 80 tcp")
  [[ $result == "nd ok"* ]] || { echo "  node -> $pod ($ip) after a neighbour flush: $result"; return 1; }
  state=$(ip -"$family" neigh show "$ip" dev "$veth")
  if [[ ! $state =~ (REACHABLE|STALE|DELAY|PROBE) ]]; then
    echo "  the node has no usable neighbour entry for $pod ($ip) on $veth: '${state:-none}'"
    return 1
  fi
  ITEST_CHECKS=$((ITEST_CHECKS + 1))
}

# A long-lived TCP connection from pod SRC to DST:PORT over FAMILY that
# exchanges a line every 50 ms with the prober's echo server (up to 1000
# lines, 120 s at most), from a shell inside SRC. held_connection_check
# then requires it to be still exchanging and never to have broken.
HELD_PID="" HELD_FILE=""
held_connection_start() {
  local src=$1 dst=$2 port=$3 family=${4:-6} ip
  if [[ $family == 6 ]]; then ip=${NETPOL_IP6[$dst]}; else ip=${NETPOL_IP[$dst]}; fi
  HELD_FILE=$ROOT/held-${src/\//-}-${dst/\//-}
  rm -f "$HELD_FILE".*
  # shellcheck disable=SC2016 # the script's variables are its own
  ip netns exec "$(pod_netns_name "$(netpol_lib_pod "$src")")" timeout 120 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || { echo "connect failed"; exit 2; }
    for ((i = 1; i <= 1000; i++)); do
      [[ -e $3.stop ]] && exit 0
      echo "held $i" >&3
      IFS= read -r -t 2 line <&3 || { echo "broken after $((i - 1)) exchanges"; exit 1; }
      [[ $line == "held $i" ]] || { echo "bad echo at $i: $line"; exit 1; }
      echo "$i" >"$3.count"
      sleep 0.05
    done' held "$ip" "$port" "$HELD_FILE" >"$HELD_FILE.out" 2>&1 &
  HELD_PID=$!
  ITEST_BG_PIDS+=("$HELD_PID")
  held_connection_wait_for 3 || { echo "  held connection $src -> $dst:$port never exchanged: $(cat "$HELD_FILE.out")"; return 1; }
}
held_connection_count() { cat "$HELD_FILE.count" 2>/dev/null || echo 0; }
# Waits (up to 5 s) until the connection has made COUNT exchanges.
held_connection_wait_for() {
  for _ in $(seq 50); do
    (($(held_connection_count) >= $1)) && return 0
    kill -0 "$HELD_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# After a policy change: 5 more exchanges on the same connection, then stop
# it and require a clean exit (it never broke).
held_connection_check() {
  local before rc=0
  [[ -n $HELD_PID ]] || { echo "  no held connection: held_connection_start runs in the scenario before"; return 1; }
  before=$(held_connection_count)
  held_connection_wait_for $((before + 5)) || rc=1
  touch "$HELD_FILE.stop"
  wait "$HELD_PID" || rc=1
  HELD_PID=""
  if ((rc)); then
    echo "  the held connection did not survive the policy change (after $before exchanges): $(cat "$HELD_FILE.out")"
    return 1
  fi
  ITEST_CHECKS=$((ITEST_CHECKS + 1))
  log "  held connection: $(held_connection_count) exchanges, $before before the change"
}

# ----------------------------------------------------------- scenarios ----
#   scenario "title"
#   policy NAME NAMESPACE <<'EOF'     (the spec, as YAML; repeat per policy)
#   expect_default ... / expect ...   (the hand-written expected matrix)
#   trace_expect SRC DST PROTO PORT allow|deny [6]   (compiled + kernel trace;
#                                      6: ext1/ext2/host by their IPv6 address)
#   before_probe CMD...               (runs once the policies are in the kernel,
#                                      before any probe: flush caches, open
#                                      connections)
#   drop_event_expect SRC DST PROTO PORT REASON src|dst [6]
#                                     (the agent's event stream must report a drop
#                                      of that flow by SRC's or DST's endpoint
#                                      while the matrix is probed)
#   run_scenario [--keep] [--ipv6]    (--keep: leave the policies for the next
#                                      scenario, which then updates them in place;
#                                      --ipv6: probe IPv6 as well, both families
#                                      with ICMP echo)
SCN_TITLE=""
SCN_YAML=""
SCN_POLICIES=0
SCN_TRACES=()
SCN_BEFORE_PROBE=()
SCN_DROP_EVENTS=()
SCN_COUNT=0
SCN_FAILED=()
SCN_FILE=50-scenario.yaml

scenario() {
  SCN_TITLE=$1
  SCN_YAML=""
  SCN_POLICIES=0
  SCN_TRACES=()
  SCN_BEFORE_PROBE=()
  SCN_DROP_EVENTS=()
  expect_default allow
}

# policy NAME NAMESPACE, spec on stdin (indented under spec:).
policy() {
  SCN_YAML+="---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: $1, namespace: $2}
spec:
$(sed 's/^/  /')
"
  SCN_POLICIES=$((SCN_POLICIES + 1))
}

trace_expect() { SCN_TRACES+=("$*"); }
before_probe() { SCN_BEFORE_PROBE+=("$*"); }
drop_event_expect() { SCN_DROP_EVENTS+=("$*"); }

# Asks the agent (compiled state, confirmed by the kernel's trace) whether
# SRC reaches DST on PROTO/PORT; compares with the expectation.
trace_check() {
  local src=$1 dst=$2 proto=$3 port=$4 want=$5 family=${6:-4} out got
  # Exit status 1 = denied; the JSON is printed either way.
  out=$(ctl policy trace --from="$(trace_peer "$src" "$family")" --to="$(trace_peer "$dst" "$family")" \
    --protocol="$proto" --port="$port" --json 2>&1) || true
  if ! jq -e 'has("allowed")' >/dev/null 2>&1 <<<"$out"; then
    echo "  trace $src -> $dst $proto/$port failed: $out"
    return 1
  fi
  got=$(jq -r 'if .allowed then "allow" else "deny" end' <<<"$out")
  if [[ $got != "$want" ]]; then
    echo "  trace $src -> $dst $proto/$port: expected $want, got $got: $(jq -r .explanation <<<"$out")"
    return 1
  fi
  if [[ $(jq -r '.kernel_checked // false' <<<"$out") == true &&
    $(jq -r '.kernel_agrees // false' <<<"$out") != true ]]; then
    echo "  trace $src -> $dst $proto/$port: the kernel disagrees with the compiled state: $out"
    return 1
  fi
  ITEST_CHECKS=$((ITEST_CHECKS + 1))
}
trace_peer() {
  if [[ $1 == */* ]]; then
    echo "$1"
  elif [[ ${2:-4} == 6 ]]; then
    echo "${NETPOL_IP6[$1]}"
  else
    echo "${NETPOL_IP[$1]}"
  fi
}

# Drop events of the agent's stream (one JSON object a line) go to FILE
# until drop_events_stop; bounded by 120 s in any case.
DROP_EVENTS_PID=""
drop_events_start() {
  ctl policy events --json --types=drop --follow_for=120s >"$1" 2>&1 &
  DROP_EVENTS_PID=$!
  ITEST_BG_PIDS+=("$DROP_EVENTS_PID")
  disown "$DROP_EVENTS_PID"
  # The subscription exists once the agent has the stream open; a short
  # pause beats parsing its log (events before that would be missed).
  sleep 0.3
}
drop_events_stop() {
  [[ -n $DROP_EVENTS_PID ]] && kill -TERM "$DROP_EVENTS_PID" 2>/dev/null
  DROP_EVENTS_PID=""
}

# A drop of SRC -> DST PROTO/PORT with REASON (DROP_REASON_* name) by the
# endpoint of AT (src: its egress policy, dst: its ingress policy) in the
# events FILE: addresses of the family, protocol, port (for ICMP the type:
# 8 / 128 for echo requests) and the pods named by the agent. Waits up to
# 5 s for it.
drop_event_check() {
  local file=$1 src=$2 dst=$3 proto=$4 port=$5 reason=$6 at=$7 family=${8:-4} number src_ip dst_ip
  local endpoint container
  case $proto in
    tcp) number=6 ;;
    udp) number=17 ;;
    icmp) if [[ $family == 6 ]]; then number=58; else number=1; fi ;;
    *) fail "drop_event_check: protocol $proto" ;;
  esac
  if [[ $family == 6 ]]; then src_ip=${NETPOL_IP6[$src]} dst_ip=${NETPOL_IP6[$dst]}; else
    src_ip=${NETPOL_IP[$src]} dst_ip=${NETPOL_IP[$dst]}
  fi
  if [[ $at == src ]]; then endpoint=$src; else endpoint=$dst; fi
  container=$(pod_container_id "$(netpol_lib_pod "$endpoint")")
  for _ in $(seq 50); do
    if jq -e -s --arg s "$src_ip" --arg d "$dst_ip" --argjson p "$number" --argjson port "$port" \
      --arg reason "$reason" --arg c "$container" --arg ns "${endpoint%/*}" --arg pod "${endpoint#*/}" \
      --arg at "$at" '
        map(select(.event.source_ip == $s and .event.destination_ip == $d and .event.protocol == $p
          and .event.destination_port == $port and .event.reason == $reason
          and .event.endpoint_key.container_id == $c
          and (if $at == "src" then .source_pod else .destination_pod end) == {namespace: $ns, name: $pod}))
        | length > 0' "$file" >/dev/null 2>&1; then
      ITEST_CHECKS=$((ITEST_CHECKS + 1))
      return 0
    fi
    sleep 0.1
  done
  echo "  no $reason drop event at $endpoint for $src ($src_ip) -> $dst ($dst_ip) $proto/$port; the stream had:"
  head -n 5 "$file" | sed 's/^/    /'
  return 1
}

run_scenario() {
  local keep=0 ipv6=0 started=$SECONDS ok=1 t cells=0 events=""
  while (($# > 0)); do
    case $1 in
      --keep) keep=1 ;;
      --ipv6) ipv6=1 ;;
      *) fail "run_scenario: unknown option $1" ;;
    esac
    shift
  done
  SCN_COUNT=$((SCN_COUNT + 1))
  log "scenario $SCN_COUNT: $SCN_TITLE ($SCN_POLICIES policies$( ((ipv6)) && echo ", IPv4 + IPv6 + ICMP"))"
  if ((ipv6)) && [[ -z ${NETPOL_IP6[ext1]:-} ]]; then
    fail "scenario '$SCN_TITLE' probes IPv6 but the node is not dual-stack (EBPF_CNI_POD_CIDR6 empty)"
  fi
  if policy_agent_available; then
    policy_apply_file "$SCN_FILE" "$SCN_YAML" "$SCN_POLICIES"
  elif ((SCN_POLICIES > 0)); then
    fail "scenario '$SCN_TITLE' needs the policy agent (policy.sock) and $CTL"
  fi
  for t in "${SCN_BEFORE_PROBE[@]}"; do
    eval "$t" || { echo "  before_probe failed: $t"; ok=0; }
  done
  if ((${#SCN_DROP_EVENTS[@]} > 0)); then
    events=$ROOT/events-$SCN_COUNT.json
    drop_events_start "$events"
  fi
  MATRIX_ICMP=$ipv6
  for MATRIX_FAMILY in 4 $( ((ipv6)) && echo 6); do
    matrix_check || ok=0
    cells=$((cells + MATRIX_CELLS))
  done
  MATRIX_FAMILY=4 MATRIX_ICMP=0
  if [[ -n $events ]]; then
    for t in "${SCN_DROP_EVENTS[@]}"; do
      # shellcheck disable=SC2086 # "SRC DST PROTO PORT REASON AT [FAMILY]"
      drop_event_check "$events" $t || ok=0
    done
    drop_events_stop
  fi
  MATRIX_CELLS=$cells
  if policy_agent_available; then
    policy_verify_clean || ok=0
    for t in "${SCN_TRACES[@]}"; do
      # shellcheck disable=SC2086 # "SRC DST PROTO PORT VERDICT"
      trace_check $t || ok=0
    done
    ((keep)) || policy_apply_file "$SCN_FILE" "" 0
  fi
  if ((ok)); then
    ITEST_CHECKS=$((ITEST_CHECKS + MATRIX_CELLS))
    log "  ok: $MATRIX_CELLS cells, ${#SCN_TRACES[@]} traces ($((SECONDS - started))s)"
  else
    SCN_FAILED+=("$SCN_COUNT: $SCN_TITLE")
    log "  FAILED: $SCN_TITLE"
  fi
}

# Fails the test when any scenario failed (after running all of them, so one
# run shows every broken semantic).
scenarios_finish() {
  if ((${#SCN_FAILED[@]} > 0)); then
    printf '  %s\n' "${SCN_FAILED[@]}" >&2
    fail "${#SCN_FAILED[@]} of $SCN_COUNT scenarios failed"
  fi
  log "all $SCN_COUNT scenarios passed"
}
