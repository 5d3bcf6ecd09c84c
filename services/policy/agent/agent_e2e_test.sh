#!/usr/bin/env bash
# The policy agent end to end on a private node (deploy/local/up.sh with
# test-unique EBPF_CNI_* directories, integration/netns/lib.sh): pods are
# added through the CNI binary with K8S_POD_NAMESPACE/K8S_POD_NAME and get
# their labels from the manifest directory; a NetworkPolicy isolating the
# server refuses the client's real TCP connection, the trace names the
# policy and the kernel agrees; a restarted agent finds the same state; a
# label change on the client's Pod object re-resolves its identity and lets
# it in; a pod whose labels already have an identity costs no policy push;
# deleting the policy opens traffic again.
source "$(dirname "${BASH_SOURCE[0]}")/../../../integration/netns/lib.sh"

itest_init policyagent 53
export EBPF_CNI_POLICY=1 # fail rather than run without the agent
CTL=$EBPF_CNI_BUILD_DIR/tools/ctl/ebpf-cni-ctl
[[ -x $EBPF_CNI_BUILD_DIR/services/policy/ebpf-cni-policy ]] || fail "ebpf-cni-policy not built"
[[ -x $CTL ]] || fail "ebpf-cni-ctl not built"
export EBPF_CNI_MANIFEST_DIR=$ROOT/manifests
MANIFESTS=$EBPF_CNI_MANIFEST_DIR
NS=agent-e2e
PORT=8080

ctl() { "$CTL" --policy_socket="unix:$EBPF_CNI_RUN_DIR/policy.sock" "$@"; }
generation() { ctl status --json | jq -r '.compiled_generation | tonumber'; }
# Applies a manifest change and waits until the kernel has what it compiles to.
apply() {
  local name=$1 before
  before=$(generation)
  if [[ $name == -* ]]; then
    rm -f "$MANIFESTS/${name#-}"
  else
    cat >"$ROOT/$name.tmp"
    mv -f "$ROOT/$name.tmp" "$MANIFESTS/$name" # atomic: the agent never reads half a file
  fi
  check "agent applied $name" ctl status --wait --timeout=20s --min_generation="$before"
}
pod_yaml() {
  cat <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS, labels: {$2}}
spec:
  containers:
  - name: main
    ports: [{name: web, containerPort: $PORT, protocol: TCP}]
EOF
}
cluster_yaml() { # client labels
  printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {team: e2e}}\n' "$NS"
  pod_yaml server "app: server"
  pod_yaml client "$1"
  pod_yaml late "app: client, access: granted"
}
# One connection attempt, bounded: a dropped SYN is a timeout.
tcp_refused() {
  ! pod_exec "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3 && cat <&3" >/dev/null 2>&1
}
trace() { ctl policy trace --from "$1" --to "$2" --protocol tcp --port "$PORT"; }

mkdir -p "$MANIFESTS"
cluster_yaml "app: client" >"$MANIFESTS/00-cluster.yaml"
node_up
check "agent in sync after up.sh" ctl status --wait --timeout=20s
expect_eq "conflist points the CNI at the agent" "$EBPF_CNI_RUN_DIR/policy.sock" \
  "$(jq -r '.plugins[] | select(.type == "ebpf-cni") | .policySocket' \
    "$EBPF_CNI_CONF_DIR/10-$EBPF_CNI_NETWORK_NAME.conflist")"

pod_add server --args "K8S_POD_NAMESPACE=$NS;K8S_POD_NAME=server"
pod_add client --args "K8S_POD_NAMESPACE=$NS;K8S_POD_NAME=client"
server_ip=$(pod_ip server)
tcp_server_start server "$PORT"
check "agent in sync with two endpoints" ctl status --wait --timeout=20s
expect_eq "endpoints known to the agent" 2 "$(ctl status --json | jq -r .endpoints)"
check "no policy yet: client reaches server" tcp_ok client "$server_ip" "$PORT"
out=$(trace "$NS/client" "$NS/server") || fail "trace without policy says denied: $out"
grep -q "not isolated" <<<"$out" || fail "trace without policy: $out"

log "isolating the server: only pods labelled access=granted may connect"
apply 10-policy.yaml <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-granted, namespace: $NS}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {access: granted}}}]
    ports: [{port: web}]
EOF
check "client refused by the policy" tcp_refused client "$server_ip" "$PORT"
rc=0
out=$(trace "$NS/client" "$NS/server") || rc=$?
expect_eq "trace exit code when denied" 1 "$rc"
grep -q "isolated for ingress by $NS/only-granted" <<<"$out" || fail "trace does not name the policy: $out"
grep -q "dropped (agrees)" <<<"$out" || fail "kernel trace does not confirm the denial: $out"
check "kernel matches the compiled state" ctl policy verify
ctl policy list | grep -q "$NS/only-granted  types=Ingress  selects 1 local endpoint" ||
  fail "policy list: $(ctl policy list)"

log "restarting the agent: it reads everything again and re-asserts the kernel state"
(source "$DEPLOY/env.sh" && ebpf_cni_stop_service policy)
node_up
check "agent in sync after its restart" ctl status --wait --timeout=20s
expect_eq "endpoints known after the restart" 2 "$(ctl status --json | jq -r .endpoints)"
check "client still refused after the agent restart" tcp_refused client "$server_ip" "$PORT"
check "kernel matches after the agent restart" ctl policy verify

log "granting the client access by label: its identity is re-resolved"
# (trace exits 1 while denied: only its JSON matters here)
source_identity() {
  { ctl policy trace --json --skip_kernel --from "$NS/client" --to "$NS/server" --port "$PORT" || true; } |
    jq -r .source_identity
}
client_identity=$(source_identity)
apply 00-cluster.yaml < <(cluster_yaml "app: client, access: granted")
for _ in $(seq 50); do # the new identity reaches the datapath, then the agent
  new_identity=$(source_identity)
  [[ $new_identity != "$client_identity" ]] && break
  sleep 0.1
done
[[ $new_identity != "$client_identity" ]] || fail "client identity still $client_identity after its labels changed"
check "agent in sync after the identity change" ctl status --wait --timeout=20s
check "client with access=granted reaches server" tcp_ok client "$server_ip" "$PORT"
out=$(trace "$NS/client" "$NS/server") || fail "trace after granting says denied: $out"
grep -q "allowed by $NS/only-granted ingress rule #0" <<<"$out" || fail "trace does not name the allowing rule: $out"
check "kernel matches after the identity change" ctl policy verify

log "a pod with known labels costs no policy push"
pushes=$(ctl status --json | jq -r '.endpoint_policy_pushes | tonumber')
pod_add late --args "K8S_POD_NAMESPACE=$NS;K8S_POD_NAME=late"
check "agent in sync with the late pod" ctl status --wait --timeout=20s
expect_eq "policy pushes after adding a pod with a known identity" "$pushes" \
  "$(ctl status --json | jq -r '.endpoint_policy_pushes | tonumber')"
check "late pod reaches server" tcp_ok late "$server_ip" "$PORT"

log "deleting the policy opens the server again"
apply -10-policy.yaml
apply 00-cluster.yaml < <(cluster_yaml "app: client")
check "client reaches server without policy" tcp_ok client "$server_ip" "$PORT"
check "kernel matches with no policy" ctl policy verify
expect_eq "policies known" 0 "$(ctl status --json | jq -r '.network_policies // 0')"
