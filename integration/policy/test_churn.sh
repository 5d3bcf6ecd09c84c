#!/usr/bin/env bash
# Policy propagation under churn (issue 5): 200 pods in 10 namespaces, 100
# NetworkPolicies spread over 10 manifest files, then CHURN_BATCHES batches of
# random edits (rewrite, add or remove policies; a seeded RNG, the seed is
# printed: CHURN_SEED=<seed> replays a run) while background traffic runs
# between pods. After every batch:
#   - the agent reports the kernel in sync with the compiled state
#     (status: source counts, applied == compiled generation);
#   - `ebpf-cni-ctl policy verify` finds no endpoint whose kernel policy
#     differs from the compiled one;
#   - sampled real probes agree with `ebpf-cni-ctl policy trace`, and the
#     trace's kernel check agrees with its compiled answer.
# Most pods run no server (probes go to the 12 that do), to keep it light.
# shellcheck disable=SC2034 # ITEST_POD_CIDR* are read by itest_init
ITEST_POD_CIDR=10.97.0.0/22 # 200 pods do not fit the default /24
ITEST_POD_CIDR6=""          # IPv4 only: half the addresses, same policy paths
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
netpol_init churn 52

CHURN_PODS=${CHURN_PODS:-200}
CHURN_NAMESPACES=${CHURN_NAMESPACES:-10}
CHURN_POLICIES=${CHURN_POLICIES:-100}
CHURN_FILES=10
CHURN_BATCHES=${CHURN_BATCHES:-12}
CHURN_SAMPLES=${CHURN_SAMPLES:-24}
CHURN_SERVERS=${CHURN_SERVERS:-12}
CHURN_SEED=${CHURN_SEED:-$(((RANDOM << 15) | RANDOM))}
log "seed $CHURN_SEED (CHURN_SEED=$CHURN_SEED replays this run)"
RANDOM=$CHURN_SEED

node_up
policy_agent_available || { echo "SKIP: needs the policy agent (policy.sock) and $CTL"; exit 77; }

# --- cluster: namespaces n0..n9 (group g0..g2), pods p000.. (app, role) ---
ROLES=(frontend backend db)
NETPOL_NAMESPACES=()
for ((n = 0; n < CHURN_NAMESPACES; n++)); do NETPOL_NAMESPACES+=("n$n"); done
churn_pod_ns() { echo "n$(($1 % CHURN_NAMESPACES))"; }
churn_pod_name() { printf 'p%03d' "$1"; }
churn_pod_labels() { echo "app: app$(($1 % 7)), role: ${ROLES[$(($1 % 3))]}"; }
{
  for ((n = 0; n < CHURN_NAMESPACES; n++)); do
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: n%d\n  labels: {ns: n%d, group: g%d}\n' \
      "$n" "$n" $((n % 3))
  done
  for ((i = 0; i < CHURN_PODS; i++)); do
    netpol_pod_yaml "$(churn_pod_ns "$i")" "$(churn_pod_name "$i")" "$(churn_pod_labels "$i")"
  done
} | manifest_write 00-cluster.yaml
NETPOL_OBJECTS=$((CHURN_PODS + CHURN_NAMESPACES))
policy_wait_source_counts "$NETPOL_OBJECTS" "$CHURN_NAMESPACES" 0

log "creating $CHURN_PODS pods through the CNI"
ALL_PODS=()
for ((i = 0; i < CHURN_PODS; i++)); do ALL_PODS+=("$(churn_pod_ns "$i")/$(churn_pod_name "$i")"); done
netpol_pods_add_parallel "${ALL_PODS[@]}"
# Servers on a spread of pods: index 17*s walks every namespace (i % 10)
# and every role (i % 3) and app (i % 7).
SERVERS=()
for ((s = 0; s < CHURN_SERVERS; s++)); do
  p=${ALL_PODS[$((s * 17 % CHURN_PODS))]}
  SERVERS+=("$p")
  netpol_serve "$(pod_netns_path "$(netpol_lib_pod "$p")")" "$(netpol_lib_pod "$p")"
done
log "$CHURN_PODS pods up, servers on: ${SERVERS[*]}"

# --- random policies ---------------------------------------------------------
pick() { local -n arr=$1; echo "${arr[$((RANDOM % ${#arr[@]}))]}"; }
random_selector() {
  case $((RANDOM % 4)) in
    0) echo "{}" ;;
    1) echo "{matchLabels: {app: app$((RANDOM % 7))}}" ;;
    2) echo "{matchLabels: {role: $(pick ROLES)}}" ;;
    3) echo "{matchExpressions: [{key: role, operator: NotIn, values: [$(pick ROLES)]}]}" ;;
  esac
}
random_peer() {
  case $((RANDOM % 5)) in
    0) echo "- podSelector: $(random_selector)" ;;
    1) echo "- namespaceSelector: {matchLabels: {group: g$((RANDOM % 3))}}" ;;
    2) printf -- '- namespaceSelector: {matchLabels: {ns: n%d}}\n  podSelector: %s\n' \
      $((RANDOM % CHURN_NAMESPACES)) "$(random_selector)" ;;
    3) echo "- namespaceSelector: {}" ;;
    4) echo "- ipBlock: {cidr: 10.98.$NETPOL_NUMBER.0/24, except: [10.98.$NETPOL_NUMBER.$((RANDOM % 200 + 2))/32]}" ;;
  esac
}
random_ports() {
  case $((RANDOM % 5)) in
    0) echo "ports: [{port: 80}]" ;;
    1) echo "ports: [{protocol: UDP, port: 81}]" ;;
    2) echo "ports: [{protocol: TCP, port: 80, endPort: 81}]" ;;
    3) echo "ports: [{port: serve-81-tcp}]" ;;
    4) echo "" ;; # all ports
  esac
}
# One rule (ingress "from" or egress "to").
random_rule() {
  local key=$1 n
  echo "- $key:"
  for ((n = 0; n <= RANDOM % 2; n++)); do random_peer | sed 's/^/  /'; done
  local ports
  ports=$(random_ports)
  [[ -n $ports ]] && echo "  $ports"
  return 0
}
# A random NetworkPolicy named $1 in a random namespace.
random_policy() {
  local name=$1 ns types r
  ns="n$((RANDOM % CHURN_NAMESPACES))"
  printf -- '---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n' "$name" "$ns"
  echo "  podSelector: $(random_selector)"
  case $((RANDOM % 3)) in
    0) types="[Ingress]" ;;
    1) types="[Egress]" ;;
    2) types="[Ingress, Egress]" ;;
  esac
  echo "  policyTypes: $types"
  [[ $types == *Ingress* ]] && random_rules ingress from
  [[ $types == *Egress* ]] && random_rules egress to
  return 0
}
# 0-2 rules under "ingress:"/"egress:" (0 rules written as [], not null).
random_rules() {
  local section=$1 key=$2 count=$((RANDOM % 3)) r
  if ((count == 0)); then
    echo "  $section: []"
    return
  fi
  echo "  $section:"
  for ((r = 0; r < count; r++)); do random_rule "$key" | sed 's/^/  /'; done
}

# Files f0..f9 each hold POLICIES_IN[f] policies named pol-<f>-<k>.
declare -A POLICIES_IN=()
total_policies() {
  local f sum=0
  for ((f = 0; f < CHURN_FILES; f++)); do sum=$((sum + ${POLICIES_IN[$f]:-0})); done
  echo "$sum"
}
# BATCH_CHANGED: set to 1 when a file was written or removed (an empty
# file removed again changes nothing, and no generation follows).
write_policy_file() {
  local f=$1 count=$2 k generation=$3
  POLICIES_IN[$f]=$count
  if ((count == 0)); then
    [[ -e $EBPF_CNI_MANIFEST_DIR/50-policies-$f.yaml ]] && BATCH_CHANGED=1
    manifest_remove "50-policies-$f.yaml"
    return
  fi
  BATCH_CHANGED=1
  for ((k = 0; k < count; k++)); do random_policy "pol-$f-$k-g$generation"; done |
    manifest_write "50-policies-$f.yaml"
}

log "writing $CHURN_POLICIES policies in $CHURN_FILES files"
before=$(policy_generation)
for ((f = 0; f < CHURN_FILES; f++)); do write_policy_file "$f" $((CHURN_POLICIES / CHURN_FILES)) 0; done
policy_wait_applied "$before" "$(total_policies)"
check "policy verify after the initial policies" policy_verify_clean

# --- background traffic --------------------------------------------------------
# A bounded loop (count and time) of probes between random pods and servers
# while the edits happen; results are not asserted (policy is changing under
# them), it keeps conntrack entries and the programs busy.
traffic_lines() {
  local n src dst
  for ((n = 0; n < 40; n++)); do
    src=$(pick ALL_PODS) dst=$(pick SERVERS)
    matrix_probe_line "$src" "$dst" "$(pick NETPOL_PORTS)"
  done
}
traffic_file=$ROOT/traffic.in
: >"$traffic_file"
for ((n = 0; n < 10; n++)); do traffic_lines >>"$traffic_file"; done
(
  end=$((SECONDS + 300))
  for ((round = 0; round < 400 && SECONDS < end; round++)); do
    "$PROBER" probe --timeout_ms=200 --parallel=64 <"$traffic_file" >/dev/null 2>&1
  done
) &
TRAFFIC_PID=$!
ITEST_BG_PIDS+=("$TRAFFIC_PID")

# --- sampled probes vs policy trace ------------------------------------------------
# Probes CHURN_SAMPLES random (pod, server, port) cells for real and asks the
# agent's trace for each; they must agree, and the trace's kernel check must
# agree with its compiled answer.
samples_agree() {
  local cells=() n src dst pp out want cell bad=0
  for ((n = 0; n < CHURN_SAMPLES; n++)); do
    src=$(pick ALL_PODS) dst=$(pick SERVERS) pp=$(pick NETPOL_PORTS)
    [[ $src == "$dst" ]] && continue
    cells+=("$src $dst $pp")
  done
  MATRIX_GOT=()
  MATRIX_DETAIL=()
  matrix_probe_cells < <(printf '%s\n' "${cells[@]}")
  for cell in "${cells[@]}"; do
    read -r src dst pp <<<"$cell"
    out=$(ctl policy trace --from="$src" --to="$dst" --protocol="${pp#*/}" --port="${pp%/*}" --json 2>&1) || true
    if ! jq -e 'has("allowed")' >/dev/null 2>&1 <<<"$out"; then
      echo "  trace $cell failed: $out"
      bad=1
      continue
    fi
    want=$(jq -r 'if .allowed then "allow" else "deny" end' <<<"$out")
    if [[ $(jq -r '.kernel_checked // false' <<<"$out") == true &&
      $(jq -r '.kernel_agrees // false' <<<"$out") != true ]]; then
      echo "  $cell: kernel disagrees with the compiled state: $(jq -c . <<<"$out")"
      bad=1
    fi
    if [[ ${MATRIX_GOT[$cell]} != "$want" ]]; then
      # One more probe with a longer timeout before calling it a mismatch.
      NETPOL_TIMEOUT_MS=1000 matrix_probe_cells <<<"$cell"
      if [[ ${MATRIX_GOT[$cell]} != "$want" ]]; then
        echo "  $cell: trace says $want ($(jq -r .explanation <<<"$out")), probe got ${MATRIX_GOT[$cell]} [${MATRIX_DETAIL[$cell]}]"
        bad=1
      fi
    fi
  done
  ((bad == 0)) && ITEST_CHECKS=$((ITEST_CHECKS + ${#cells[@]}))
  return "$bad"
}

check "sampled probes agree with policy trace (initial policies)" samples_agree

# --- churn ---------------------------------------------------------------------------
for ((batch = 1; batch <= CHURN_BATCHES; batch++)); do
  edits=$((1 + RANDOM % 3))
  what=()
  BATCH_CHANGED=0
  for ((e = 0; e < edits; e++)); do
    f=$((RANDOM % CHURN_FILES))
    count=${POLICIES_IN[$f]}
    case $((RANDOM % 3)) in
      0) count=$((count + 1 + RANDOM % 3)) ;;           # add policies
      1) count=$((count > 0 ? count - 1 - RANDOM % count : 0)) ;; # remove some
      2) ;;                                              # rewrite (new specs)
    esac
    ((count > 20)) && count=20
    what+=("f$f:${POLICIES_IN[$f]}->$count")
    write_policy_file "$f" "$count" "$batch"
  done
  # No wait between the edits of a batch: the agent sees them back to back.
  started=$EPOCHREALTIME
  ((BATCH_CHANGED)) || before=-
  policy_wait_applied "$before" "$(total_policies)"
  waited=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
  log "batch $batch: ${what[*]} -> $(total_policies) policies, in sync after ${waited} ms"
  check "policy verify after batch $batch" policy_verify_clean
  check "sampled probes agree with policy trace after batch $batch" samples_agree
  before=$(policy_generation)
done

kill -TERM "$TRAFFIC_PID" 2>/dev/null || true
check "agent still serving" bash -c "\"\$1\" health \"\$2\" >/dev/null" _ "$PROBE" "$EBPF_CNI_RUN_DIR/policy.sock"
log "churn done: $CHURN_BATCHES batches, seed $CHURN_SEED"
