#!/usr/bin/env bash
# NetworkPolicy end to end (issue 5): on a private node (deploy/local/up.sh,
# policy agent reading a manifest directory) with ENDPOINTS pods created
# through the real CNI binary and POLICIES NetworkPolicies:
#   1. policy change -> enforced in the kernel, p50/p99 (policy-e2e-bench
#      latency: rename of the policy file -> the datapath's Trace through the
#      real BPF programs flips; also -> the agent's status reports applied);
#   2. map writes caused by adding a pod whose labels already have an
#      identity: the agent's endpoint_policy_pushes delta (target 0), and for
#      contrast a pod with a new label set that existing selectors match.
# Results: summary.md and results.json in --out (docs/benchmarks.md).
#
# usage: sudo EBPF_CNI_BUILD_DIR=build bench/policy/e2e/policy_e2e.sh [--out DIR]
#          [--endpoints 1000] [--policies 500] [--iterations 200] [--smoke]
set -euo pipefail
ENDPOINTS=1000
POLICIES=500
ITERATIONS=200
OUT=""
while (($#)); do
  case $1 in
    --endpoints) ENDPOINTS=$2; shift 2 ;;
    --policies) POLICIES=$2; shift 2 ;;
    --iterations) ITERATIONS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --smoke) ENDPOINTS=20 POLICIES=20 ITERATIONS=20; shift ;;
    *) echo "usage: $0 [--out DIR] [--endpoints N] [--policies N] [--iterations N] [--smoke]" >&2; exit 2 ;;
  esac
done
# shellcheck disable=SC2034 # both read by itest_init
{
  ITEST_POD_CIDR=10.96.0.0/21 # room for 2000 pods
  ITEST_POD_CIDR6=""
}
source "$(dirname "${BASH_SOURCE[0]}")/../../../integration/policy/lib.sh"
netpol_init benche2e 54
BENCH=$EBPF_CNI_BUILD_DIR/bench/policy/e2e/policy-e2e-bench
[[ -x $BENCH ]] || fail "$BENCH not built (target policy-e2e-bench)"
OUT=${OUT:-$ROOT/out} # inside ROOT: removed at exit unless --out is given
mkdir -p "$OUT"

node_up
[[ -S $EBPF_CNI_RUN_DIR/policy.sock ]] || { echo "SKIP: this node runs no policy agent"; exit 77; }
status_json() { "$BENCH" status --policy_socket="$EBPF_CNI_RUN_DIR/policy.sock"; }
# Bounded wait until the agent knows N objects, P policies, kernel in sync.
wait_sync() {
  local objects=$1 policies=$2 json
  for _ in $(seq 1200); do
    json=$(status_json) || true
    jq -e --argjson o "$objects" --argjson p "$policies" '
      .source.synced and (.source.pods + .source.namespaces >= $o)
      and .source.network_policies == $p and (.source.errors | length == 0)
      and (.compiled_generation | tonumber) == (.applied_generation | tonumber)
      and .endpoints_pending == 0' >/dev/null 2>&1 <<<"$json" && return 0
    sleep 0.1
  done
  fail "agent not in sync ($objects objects, $policies policies) after 120 s: $json"
}

# --- cluster: 10 namespaces, pods with 50 app label sets -----------------
NAMESPACES=10
APPS=50
bench_pod_ns() { echo "e$(($1 % NAMESPACES))"; }
bench_pods=()
{
  for ((n = 0; n < NAMESPACES; n++)); do
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: e%d\n  labels: {group: g%d}\n' "$n" $((n % 3))
  done
  for ((i = 0; i < ENDPOINTS; i++)); do
    netpol_pod_yaml "$(bench_pod_ns "$i")" "p$i" "app: app$((i % APPS)), tier: t$((i % 4))"
  done
  # The pair the latency loop traces (same namespace).
  netpol_pod_yaml e0 bench-source "bench: source"
  netpol_pod_yaml e0 bench-target "bench: target"
} | manifest_write 00-cluster.yaml
for ((i = 0; i < ENDPOINTS; i++)); do bench_pods+=("$(bench_pod_ns "$i")/p$i"); done
bench_pods+=(e0/bench-source e0/bench-target)

# 500 policies in 10 files: each selects one app label set in its
# namespace, allows ingress from another app (same namespace) on TCP/80 or
# from a group of namespaces on a port range, and some restrict egress.
for ((f = 0; f < 10; f++)); do
  for ((k = f; k < POLICIES; k += 10)); do
    types="Ingress"
    ((k % 4 == 0)) && types="Ingress, Egress"
    cat <<EOF
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: pol-$k, namespace: e$((k % NAMESPACES))}
spec:
  podSelector: {matchLabels: {app: app$((k % APPS))}}
  policyTypes: [$types]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: app$(((k * 7 + 1) % APPS))}}
    ports: [{port: 80}]
  - from:
    - namespaceSelector: {matchLabels: {group: g$((k % 3))}}
      podSelector: {matchExpressions: [{key: tier, operator: In, values: [t$((k % 4)), t$(((k + 1) % 4))]}]}
    ports: [{protocol: TCP, port: 8000, endPort: 8100}, {protocol: UDP, port: 53}]
EOF
    if ((k % 4 == 0)); then
      cat <<EOF
  egress:
  - to:
    - namespaceSelector: {}
      podSelector: {matchLabels: {app: app$(((k + 3) % APPS))}}
    ports: [{port: serve-80-tcp}]
EOF
    fi
  done | manifest_write "10-policies-$f.yaml"
done
wait_sync $((ENDPOINTS + 2 + NAMESPACES)) "$POLICIES"

log "creating $((ENDPOINTS + 2)) endpoints through the CNI"
setup_start=$SECONDS
netpol_pods_add_parallel "${bench_pods[@]}"
wait_sync $((ENDPOINTS + 2 + NAMESPACES)) "$POLICIES"
setup_s=$((SECONDS - setup_start))
status_json >"$OUT/status-after-setup.json"
log "node: $(jq -c '{endpoints, identities, network_policies, endpoint_policy_pushes}' "$OUT/status-after-setup.json") (pods added in ${setup_s}s)"

# --- 1. change -> enforced ----------------------------------------------------------
log "timing $ITERATIONS policy changes"
"$BENCH" latency --manifest_dir="$EBPF_CNI_MANIFEST_DIR" --tmp_dir="$ROOT/tmp" \
  --policy_socket="$EBPF_CNI_RUN_DIR/policy.sock" --datapath_socket="$EBPF_CNI_RUN_DIR/datapath.sock" \
  --namespace_name=e0 --source_ip="${NETPOL_IP[e0/bench-source]}" \
  --destination_ip="${NETPOL_IP[e0/bench-target]}" --iterations="$ITERATIONS" | tee "$OUT/latency.out"
latency=$(tail -n1 "$OUT/latency.out")

# --- 2. pushes caused by adding pods --------------------------------------------------
# pushes_for_new_pod NAMESPACE NAME LABELS: Pod object first (as the API
# server has it before the kubelet runs the CNI), then the ADD; PUSHES =
# the pushes between the ADD and the agent being in sync again. Not called
# in $(...): the pod must be registered in this shell for the cleanup.
objects=$((ENDPOINTS + 2 + NAMESPACES))
pushes_for_new_pod() {
  local ns=$1 name=$2 labels=$3 before after
  objects=$((objects + 1))
  netpol_pod_yaml "$ns" "$name" "$labels" | manifest_write "20-$name.yaml"
  wait_sync "$objects" $((POLICIES + 1))
  before=$(status_json | jq -r '.endpoint_policy_pushes | tonumber')
  netpol_pods_add_parallel "$ns/$name"
  wait_sync "$objects" $((POLICIES + 1))
  after=$(status_json | jq -r '.endpoint_policy_pushes | tonumber')
  PUSHES=$((after - before))
}
# app1/t1 pods exist in e1 (p1, p101, ...): same identity, nothing to push.
pushes_for_new_pod e1 known-labels "app: app1, tier: t1"
known_pushes=$PUSHES
# No app1 pod in e0: a new identity, which the policies of e0 selecting app0
# (ingress from app1) and those with egress to app1 anywhere must learn.
pushes_for_new_pod e0 new-labels "app: app1, tier: t9"
new_pushes=$PUSHES
log "pushes: pod with known labels $known_pushes, pod with a new label set $new_pushes"

jq -n --argjson latency "$latency" --argjson endpoints "$ENDPOINTS" --argjson policies "$POLICIES" \
  --argjson known "$known_pushes" --argjson new "$new_pushes" \
  --slurpfile status "$OUT/status-after-setup.json" \
  '{endpoints: $endpoints, policies: $policies, latency: $latency,
    pushes_adding_pod_with_known_labels: $known, pushes_adding_pod_with_new_labels: $new,
    identities: $status[0].identities}' | tee "$OUT/results.json"
{
  echo "| endpoints | policies | identities | change->kernel p50 / p99 / max (ms) | change->status applied p50 / p99 (ms) | pushes: pod with known labels | pushes: pod with new label set |"
  echo "|---|---|---|---|---|---|---|"
  jq -r '"| \(.endpoints) | \(.policies) | \(.identities) | \(.latency.kernel_enforced.p50_ms) / \(.latency.kernel_enforced.p99_ms) / \(.latency.kernel_enforced.max_ms) | \(.latency.status_applied.p50_ms) / \(.latency.status_applied.p99_ms) | \(.pushes_adding_pod_with_known_labels) | \(.pushes_adding_pod_with_new_labels) |"' "$OUT/results.json"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
ITEST_CHECKS=$((ITEST_CHECKS + 1))
