# Helpers for the tests of several ebpf-cni attachments per pod and per node
# (sourced after lib.sh and itest_init): a second ebpf-cni network on the
# same node, its own IPAM daemon when it needs a pool of its own, CNI calls on
# either network, and CNI GC through the installed binary.
# shellcheck shell=bash

# second_network NAME VETH_PREFIX [IPAM_SOCKET]
# Writes a conflist for network NAME next to the node's: the node's ebpf-cni
# entry (same datapath, identity and, unless IPAM_SOCKET is given, IPAM) with
# its own name and host veth prefix.
second_network() {
  local name=$1 prefix=$2 ipam_socket=${3:-}
  jq --arg name "$name" --arg prefix "$prefix" --arg ipam "$ipam_socket" '
    .name = $name
    | .plugins[0].hostVethPrefix = $prefix
    | if $ipam != "" then .plugins[0].ipamSocket = $ipam else . end' \
    "$EBPF_CNI_CONFLIST" >"$EBPF_CNI_CONF_DIR/10-$name.conflist"
}

# start_second_ipam DIR POOL POOL6: an IPAM daemon of its own (socket
# DIR/ipam.sock, database in DIR), stopped by the test's cleanup.
start_second_ipam() {
  local dir=$1 pool=$2 pool6=$3
  mkdir -p "$dir"
  setsid "$EBPF_CNI_BUILD_DIR/services/ipam/ebpf-cni-ipam" --socket="$dir/ipam.sock" --state_dir="$dir" \
    --pool_cidr="$pool" --pool_cidr6="$pool6" </dev/null >>"$dir/ipam.log" 2>&1 &
  ITEST_BG_PIDS+=($!)
  disown $!
  "$PROBE" wait "$dir/ipam.sock" 10 >/dev/null || fail "second IPAM did not start (log: $(tail -n 5 "$dir/ipam.log"))"
}

# net_cni NETWORK COMMAND POD IFNAME [cni-exec.sh options]: cni-exec.sh on
# that network's conflist, just the ebpf-cni plugin (the chained bandwidth
# plugin cannot CHECK a pod without limits, README). ADD results go to
# $ROOT/results/POD-IFNAME.json.
net_cni() {
  local network=$1 command=$2 pod=$3 ifname=$4 out
  shift 4
  if ! out=$(EBPF_CNI_NETWORK_NAME=$network "$DEPLOY/cni-exec.sh" --plugin-only --ifname "$ifname" "$@" \
    "$command" "$(pod_container_id "$pod")" "$(pod_netns_path "$pod")"); then
    fail "$command of $pod/$ifname on $network failed: $out"
  fi
  if [[ $command == ADD ]]; then
    mkdir -p "$ROOT/results"
    printf '%s\n' "$out" >"$ROOT/results/$pod-$ifname.json"
  fi
}

# Address (family 4 or 6) of an attachment from its ADD result.
attachment_ip() {
  local pod=$1 ifname=$2 family=$3
  jq -r --arg fam "$family" '.ips[] | select((.address | contains(":")) == ($fam == "6"))
    | .address | split("/")[0]' "$ROOT/results/$pod-$ifname.json" | head -n1
}

# Routes of an attachment's ADD result, as "dst via gw" lines.
attachment_routes() {
  jq -r '.routes[]? | "\(.dst) via \(.gw)"' "$ROOT/results/$1-$2.json"
}

# from_pod_packets + to_pod_packets of one attachment's datapath endpoint.
attachment_packets() {
  endpoints_json | jq -r --arg cid "$(pod_container_id "$1")" --arg ifname "$2" \
    '[.endpoints[] | select(.key.container_id == $cid and .key.interface_name == $ifname)
      | (.counters.from_pod_packets | tonumber) + (.counters.to_pod_packets | tonumber)] | add // 0'
}

# cni_gc NETWORK VALID_JSON: CNI GC of that network through the installed
# binary, as a runtime (libcni) sends it; VALID_JSON is the
# cni.dev/valid-attachments list. Prints the plugin's output.
cni_gc() {
  local network=$1 valid=$2 config
  config=$(jq -c --argjson valid "$valid" '.plugins[0] + {cniVersion: "1.1.0", name: .name,
    "cni.dev/valid-attachments": $valid}' "$EBPF_CNI_CONF_DIR/10-$network.conflist")
  CNI_COMMAND=GC CNI_PATH=$EBPF_CNI_BIN_DIR "$EBPF_CNI_BIN_DIR/ebpf-cni" <<<"$config"
}

# Negation usable with check: check "gone" not has_endpoint x.
not() { ! "$@"; }

# ---- policy agent (when the node runs one) ----

multinet_ctl() { "$EBPF_CNI_CTL" --socket="$EBPF_CNI_RUN_DIR/policy.sock" "$@"; }
multinet_policy_agent_running() { [[ -S $EBPF_CNI_RUN_DIR/policy.sock && -x $EBPF_CNI_CTL ]]; }

# Writes a manifest file atomically (the agent reloads renamed files).
multinet_manifest_write() {
  local name=$1 tmp
  mkdir -p "$EBPF_CNI_MANIFEST_DIR" "$ROOT/tmp"
  tmp=$(mktemp "$ROOT/tmp/$name.XXXXXX")
  cat >"$tmp"
  mv -f "$tmp" "$EBPF_CNI_MANIFEST_DIR/$name"
}

# Waits (bounded, 20 s) until the agent knows POLICIES NetworkPolicies and
# has compiled and applied everything to the kernel, past generation BEFORE.
multinet_policy_wait() {
  local before=$1 policies=$2 json deadline=$((SECONDS + 20))
  multinet_ctl status --wait --min_generation="$before" --timeout=20s >/dev/null 2>&1 || true
  while ((SECONDS < deadline)); do
    json=$(multinet_ctl status --json 2>/dev/null || true)
    jq -e --argjson p "$policies" '(.source.synced == true)
      and ((.source.network_policies // 0) == $p)
      and ((.compiled_generation // "0") | tonumber) == ((.applied_generation // "0") | tonumber)
      and ((.endpoints_pending // 0) == 0)' >/dev/null 2>&1 <<<"$json" && return 0
    sleep 0.1
  done
  fail "policy agent not in sync with $policies NetworkPolicies within 20 s: ${json:-no status}"
}
multinet_policy_generation() { multinet_ctl status --json 2>/dev/null | jq -r '.compiled_generation // "0"'; }
