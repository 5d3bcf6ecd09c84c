#!/usr/bin/env bash
# Bad input against the real installed CNI binary and services: every case
# must exit non-zero, print the CNI spec error JSON with the expected code and
# a message on stdout, and leave nothing behind (no veth, no address
# allocation, no datapath endpoint, no interface in the pod). A few positive
# cases (code 0) pin down what must keep working next to the failures.
# The pool is a tiny /29 (5 usable IPv4 addresses) so exhaustion is testable.
# shellcheck disable=SC2034 # read by itest_init in lib.sh
ITEST_POD_CIDR=10.99.6.0/29
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init badinput 6

node_up
PLUGIN=$EBPF_CNI_BIN_DIR/ebpf-cni
# The ebpf-cni plugin's own config as a runtime sends it (name and
# cniVersion injected from the list).
CONFLIST=$EBPF_CNI_CONF_DIR/10-$EBPF_CNI_NETWORK_NAME.conflist
BASE_CONFIG=$(jq -c '.plugins[0] + {name: .name, cniVersion: .cniVersion}' "$CONFLIST")

# A healthy pod next to all the failures; it must survive every case.
pod_add good --plugin-only
GOOD_RESULT=$(<"$(pod_result_file good)")
GOOD_VETH=$(pod_host_veth good)
# The namespace failing ADDs are pointed at; must stay with only lo.
pod_netns_create victim
VICTIM=$(pod_netns_path victim)
NOT_A_NETNS=$ROOT/regular-file
echo "not a namespace" >"$NOT_A_NETNS"

CASES=0
PASSED=0
case_number=0

# run_case NAME WANT_CODE [options...]
#   --env K=V       set/override a CNI_* variable
#   --unset K       remove a variable
#   --jq FILTER     transform the base config
#   --raw TEXT      send TEXT as the config instead
#   --no-leak-check skip the nothing-left-behind assertions (positive cases)
#   --max-seconds N the call must return within N seconds
# Defaults: CNI_COMMAND=ADD, a fresh container id, the victim netns, eth0.
run_case() {
  local name=$1 want=$2
  shift 2
  case_number=$((case_number + 1))
  local cid="$TEST_ID-c$case_number"
  declare -A env=([CNI_COMMAND]=ADD [CNI_CONTAINERID]=$cid [CNI_NETNS]=$VICTIM
    [CNI_IFNAME]=eth0 [CNI_PATH]=$EBPF_CNI_BIN_DIR)
  local config=$BASE_CONFIG leak_check=1 max_seconds=20
  while (($#)); do
    case $1 in
      --env) env[${2%%=*}]=${2#*=}; shift 2 ;;
      --unset) unset "env[$2]"; shift 2 ;;
      --jq) config=$(jq -c "$2" <<<"$BASE_CONFIG"); shift 2 ;;
      --raw) config=$2; shift 2 ;;
      --no-leak-check) leak_check=0; shift ;;
      --max-seconds) max_seconds=$2; shift 2 ;;
      *) fail "run_case: bad option $1" ;;
    esac
  done
  local env_args=() key
  for key in "${!env[@]}"; do env_args+=("$key=${env[$key]}"); done

  local allocs_before endpoints_before veths_before
  allocs_before=$(allocation_count)
  endpoints_before=$(endpoint_count)
  veths_before=$(host_veths | sort | tr '\n' ' ')

  local out rc=0 start=$SECONDS
  # env -i: only what a runtime passes (plus PATH), nothing from this shell.
  out=$(printf '%s' "$config" | timeout 60 env -i PATH="$PATH" "${env_args[@]}" "$PLUGIN" 2>"$ROOT/stderr") || rc=$?
  local took=$((SECONDS - start)) problems=()
  CASES=$((CASES + 1))

  if ((want == 0)); then
    ((rc == 0)) || problems+=("exit $rc, want 0 (stdout: $out)")
  else
    ((rc != 0)) || problems+=("exit 0, want failure")
    ((rc != 124)) || problems+=("timed out")
    if ! jq -e 'type == "object"' >/dev/null 2>&1 <<<"$out"; then
      problems+=("stdout is not an error JSON object: '$out'")
    else
      local code msg version
      code=$(jq -r '.code' <<<"$out")
      msg=$(jq -r '.msg // empty' <<<"$out")
      version=$(jq -r '.cniVersion // empty' <<<"$out")
      [[ $code == "$want" ]] || problems+=("code $code, want $want (msg: $msg)")
      [[ -n $msg ]] || problems+=("no msg in $out")
      [[ -n $version ]] || problems+=("no cniVersion in $out")
    fi
  fi
  ((took <= max_seconds)) || problems+=("took ${took}s, limit ${max_seconds}s")

  if ((leak_check)); then
    [[ $(allocation_count) == "$allocs_before" ]] || problems+=("IPAM allocations $allocs_before -> $(allocation_count)")
    [[ $(endpoint_count) == "$endpoints_before" ]] || problems+=("endpoints $endpoints_before -> $(endpoint_count)")
    [[ $(host_veths | sort | tr '\n' ' ') == "$veths_before" ]] || problems+=("host veths changed: $(host_veths | tr '\n' ' ')")
    local victim_links
    victim_links=$(ip -n "$(pod_netns_name victim)" -o link show | wc -l)
    ((victim_links == 1)) || problems+=("victim netns has $victim_links links")
  fi

  if ((${#problems[@]} == 0)); then
    PASSED=$((PASSED + 1))
    printf 'ok    %-55s code %s\n' "$name" "$want"
  else
    printf 'FAIL  %-55s %s\n' "$name" "${problems[*]}"
    sed 's/^/        stderr: /' "$ROOT/stderr" | head -5
  fi
}

log "bad input matrix"
#        name                                          code  input
# --- the config on stdin
run_case "malformed JSON"                                6  --raw '{"cniVersion": "1.0.0", "name":'
run_case "empty stdin"                                   6  --raw ''
run_case "JSON array instead of object"                  6  --raw '[1, 2]'
run_case "missing cniVersion"                            1  --jq 'del(.cniVersion)'
run_case "old unsupported cniVersion 0.1.0"              1  --jq '.cniVersion = "0.1.0"'
run_case "unknown cniVersion 9.9.9"                      1  --jq '.cniVersion = "9.9.9"'
run_case "cniVersion not a string"                       1  --jq '.cniVersion = 1'
run_case "missing name"                                  7  --jq 'del(.name)'
run_case "missing type"                                  7  --jq 'del(.type)'
run_case "empty runDir"                                  7  --jq '.runDir = ""'
run_case "hostVethPrefix too long"                       7  --jq '.hostVethPrefix = "waytoolongprefix"'
run_case "hostVethPrefix with a slash"                   7  --jq '.hostVethPrefix = "a/b"'
run_case "mtu not a number"                              7  --jq '.mtu = "big"'
run_case "mtu out of range"                              7  --jq '.mtu = 70000'
run_case "runDir not a string"                           7  --jq '.runDir = 42'
run_case "malformed prevResult"                          6  --jq '.prevResult = {"ips": "nope"}'
# --- the environment
run_case "CNI_COMMAND missing"                           4  --unset CNI_COMMAND
run_case "CNI_COMMAND unknown"                           4  --env CNI_COMMAND=EXPLODE
run_case "CNI_COMMAND lower case"                        4  --env CNI_COMMAND=add
run_case "CNI_CONTAINERID missing"                       4  --unset CNI_CONTAINERID
run_case "CNI_CONTAINERID with a space"                  4  --env "CNI_CONTAINERID=bad id"
run_case "CNI_CONTAINERID starting with '-'"             4  --env CNI_CONTAINERID=-dash
run_case "CNI_NETNS missing on ADD"                      4  --unset CNI_NETNS
# 3: "container unknown or does not exist" is the spec's code for this.
run_case "CNI_NETNS does not exist"                      3  --env "CNI_NETNS=/var/run/netns/$TEST_ID-missing"
run_case "CNI_NETNS is a regular file"                   4  --env "CNI_NETNS=$NOT_A_NETNS"
run_case "CNI_NETNS is a mount namespace"                4  --env CNI_NETNS=/proc/self/ns/mnt
run_case "CNI_IFNAME missing"                            4  --unset CNI_IFNAME
run_case "CNI_IFNAME 16 characters"                      4  --env CNI_IFNAME=abcdefghijklmnop
run_case "CNI_IFNAME with a slash"                       4  --env CNI_IFNAME=eth/0
run_case "CNI_IFNAME with a space"                       4  --env "CNI_IFNAME=eth 0"
run_case "CNI_IFNAME is '..'"                            4  --env CNI_IFNAME=..
run_case "CNI_ARGS without '='"                          4  --env CNI_ARGS=IgnoreUnknown
run_case "CNI_ARGS with an empty key"                    4  --env 'CNI_ARGS==value'
# --- the services
run_case "services down (no sockets in runDir)"         11  --jq ".runDir = \"$ROOT/nowhere\"" --max-seconds 15
run_case "datapath down, IPAM up: allocation rolled back" 11 \
  --jq ".datapathSocket = \"$ROOT/nowhere/datapath.sock\"" --max-seconds 15
# --- the pod
run_case "ADD of an interface that already exists"     101  --env "CNI_NETNS=$(pod_netns_path good)"
run_case "CHECK without prevResult"                      7  --env CNI_COMMAND=CHECK \
  --env "CNI_CONTAINERID=$(pod_container_id good)" --env "CNI_NETNS=$(pod_netns_path good)"
run_case "CHECK with a prevResult that does not match"  102 --env CNI_COMMAND=CHECK \
  --env "CNI_CONTAINERID=$(pod_container_id good)" --env "CNI_NETNS=$(pod_netns_path good)" \
  --jq ".prevResult = ($GOOD_RESULT | .ips[0].address = \"10.99.6.6/32\")"
# --- what must keep working next to all that
run_case "VERSION"                                       0  --env CNI_COMMAND=VERSION --unset CNI_NETNS \
  --no-leak-check
run_case "CHECK of the healthy pod"                      0  --env CNI_COMMAND=CHECK \
  --env "CNI_CONTAINERID=$(pod_container_id good)" --env "CNI_NETNS=$(pod_netns_path good)" \
  --jq ".prevResult = $GOOD_RESULT"
run_case "DEL with CNI_NETNS unset"                      0  --env CNI_COMMAND=DEL --unset CNI_NETNS
run_case "DEL of a container that was never added"      0  --env CNI_COMMAND=DEL --env "CNI_CONTAINERID=$TEST_ID-c1"

log "the healthy pod survived"
check "good pod still has its veth $GOOD_VETH" bash -c "ip link show dev $GOOD_VETH >/dev/null"
check "host -> good pod" bash -c "ping -c 1 -W 2 -q $(pod_ip good 4) >/dev/null"
expect_eq "allocations (good only)" 1 "$(allocation_count)"

log "pool exhaustion (/29: 5 usable addresses, 1 in use)"
for pod in f1 f2 f3 f4; do pod_add "$pod" --plugin-only; done
expect_eq "allocations with a full pool" 5 "$(allocation_count)"
run_case "ADD with the IPv4 pool exhausted"            100
pod_del f4 --plugin-only
pod_netns_create after
out=$("$DEPLOY/cni-exec.sh" --plugin-only ADD "$(pod_container_id after)" "$(pod_netns_path after)") ||
  fail "ADD after freeing an address failed: $out"
ITEST_CHECKS=$((ITEST_CHECKS + 1))

log "a bad pool CIDR stops the IPAM service from starting, with a clear error"
bad_node() {
  EBPF_CNI_RUN_DIR=$ROOT/bad/run EBPF_CNI_STATE_DIR=$ROOT/bad/state EBPF_CNI_LOG_DIR=$ROOT/bad/logs \
    EBPF_CNI_CONF_DIR=$ROOT/bad/conf EBPF_CNI_BIN_DIR=$ROOT/bad/bin EBPF_CNI_BPF_DIR=$EBPF_CNI_BPF_DIR-bad \
    EBPF_CNI_START_TIMEOUT=10 "$@"
}
for cidr in 10.99.6.0/33 not-a-cidr 300.1.2.0/24; do
  rc=0
  bad_node env EBPF_CNI_POD_CIDR="$cidr" "$DEPLOY/up.sh" >"$ROOT/bad-up.out" 2>&1 || rc=$?
  CASES=$((CASES + 1))
  if ((rc != 0)) && grep -qi "pool" "$ROOT/bad-up.out" && grep -qF "$cidr" "$ROOT/bad/logs/ipam.log"; then
    PASSED=$((PASSED + 1))
    printf 'ok    %-55s up.sh exit %s\n' "pool CIDR '$cidr' refused" "$rc"
  else
    printf 'FAIL  %-55s up.sh exit %s\n' "pool CIDR '$cidr' refused" "$rc"
    sed 's/^/        /' "$ROOT/bad-up.out" | tail -n 8
  fi
  bad_node env EBPF_CNI_PURGE=1 "$DEPLOY/down.sh" >/dev/null 2>&1
done
rm -rf "$EBPF_CNI_BPF_DIR-bad"

echo "$PASSED passed, $((CASES - PASSED)) failed"
((CASES >= 30)) || fail "matrix shrank to $CASES cases"
((PASSED == CASES)) || fail "$((CASES - PASSED)) of $CASES bad-input cases failed"
