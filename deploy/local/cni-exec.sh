#!/usr/bin/env bash
# Runs the node's CNI network the way a container runtime (libcni) does, for
# the demo, the integration tests and manual debugging:
#   - reads the conflist up.sh wrote ($EBPF_CNI_CONF_DIR/10-<network>.conflist)
#   - ADD: runs every plugin in order, each getting the network's name and
#     cniVersion, the previous plugin's result as prevResult, and the
#     runtimeConfig keys it declared in "capabilities"; caches the final
#     result, runtime config, CNI_ARGS and the conflist itself (like libcni's
#     /var/lib/cni/results)
#   - CHECK: plugins in order with the cached result as prevResult
#   - DEL: plugins in reverse order with the cached result and the cached
#     conflist (so DEL works after down.sh removed it), then forgets it
#   CHECK and DEL reuse the cached runtime config and CNI_ARGS unless given
#   again, as runtimes pass the same ones (portmap needs them to clean up).
#   - plugins are found in $EBPF_CNI_BIN_DIR (CNI_PATH)
# Prints the final result (or the failing plugin's error JSON) on stdout and
# exits with the plugin's exit code, so callers can assert on both.
#
# usage: cni-exec.sh [--ifname NAME] [--args 'K=V;K2=V2'] [--runtime-config JSON]
#                    [--plugin-only] ADD|CHECK|DEL CONTAINER_ID [NETNS]
#   NETNS          a name under /var/run/netns or a path; may be empty for DEL
#   --plugin-only  run only the ebpf-cni plugin (no portmap/bandwidth)
set -euo pipefail
# shellcheck source=deploy/local/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

usage() {
  sed -n 's/^# \{0,1\}//; /^usage:/,/^  --plugin-only/p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

ifname=eth0
cni_args=""
cni_args_given=0
runtime_config='{}'
runtime_config_given=0
plugin_only=0
positional=()
while (($#)); do
  case $1 in
    --ifname) ifname=${2?}; shift 2 ;;
    --args) cni_args=${2?}; cni_args_given=1; shift 2 ;;
    --runtime-config) runtime_config=${2?}; runtime_config_given=1; shift 2 ;;
    --plugin-only) plugin_only=1; shift ;;
    -h | --help) usage ;;
    --*) echo "cni-exec.sh: unknown option $1" >&2; usage ;;
    *) positional+=("$1"); shift ;;
  esac
done
((${#positional[@]} >= 2)) || usage
command=${positional[0]}
container_id=${positional[1]}
netns=${positional[2]:-}
case $command in ADD | CHECK | DEL) ;; *) usage ;; esac
if [[ -n $netns && $netns != */* ]]; then
  netns=/var/run/netns/$netns
fi
jq -e . >/dev/null <<<"$runtime_config" || { echo "cni-exec.sh: --runtime-config is not JSON" >&2; exit 2; }

# Persistent like libcni's /var/lib/cni/results: a DEL after a node restart
# (or after down.sh removed the conflist) still needs what ADD was given.
cache_dir=$EBPF_CNI_STATE_DIR/cni-results
cache_file=$cache_dir/$EBPF_CNI_NETWORK_NAME-$container_id-$ifname.json

if [[ $command == DEL && -f $cache_file ]] && jq -e '.config' "$cache_file" >/dev/null 2>&1; then
  # DEL tears down what ADD set up, with the config ADD used.
  conflist=$(jq -c '.config' "$cache_file")
elif [[ -r $EBPF_CNI_CONFLIST ]]; then
  conflist=$(<"$EBPF_CNI_CONFLIST")
else
  echo "cni-exec.sh: no conflist at $EBPF_CNI_CONFLIST (run up.sh)" >&2
  exit 2
fi

# Indices of the plugins to run, in execution order.
mapfile -t indices < <(jq -r --argjson only "$plugin_only" \
  '.plugins | to_entries[] | select($only == 0 or .value.type == "ebpf-cni") | .key' <<<"$conflist")
if [[ $command == DEL ]]; then
  mapfile -t indices < <(printf '%s\n' "${indices[@]}" | tac)
fi

prev=null
if [[ $command != ADD && -f $cache_file ]]; then
  prev=$(jq -c '.result' "$cache_file")
  ((runtime_config_given)) || runtime_config=$(jq -c '.runtimeConfig // {}' "$cache_file")
  ((cni_args_given)) || cni_args=$(jq -r '.cniArgs // ""' "$cache_file")
fi

# Builds the stdin config of plugin $1 the way libcni does.
plugin_config() {
  jq -c --argjson i "$1" --argjson prev "$prev" --argjson rc "$runtime_config" '
    . as $list
    | $list.plugins[$i]
    | . + {name: $list.name, cniVersion: $list.cniVersion}
    | if $prev != null then . + {prevResult: $prev} else . end
    | (.capabilities // {}) as $caps
    | ($rc | with_entries(select($caps[.key] == true))) as $selected
    | if ($selected | length) > 0 then . + {runtimeConfig: $selected} else . end
  ' <<<"$conflist"
}

output=""
for i in "${indices[@]}"; do
  config=$(plugin_config "$i")
  type=$(jq -r .type <<<"$config")
  plugin=$EBPF_CNI_BIN_DIR/$type
  rc=0
  output=$(env CNI_COMMAND="$command" CNI_CONTAINERID="$container_id" CNI_NETNS="$netns" \
    CNI_IFNAME="$ifname" CNI_ARGS="$cni_args" CNI_PATH="$EBPF_CNI_BIN_DIR" \
    "$plugin" <<<"$config") || rc=$?
  if ((rc != 0)); then
    # The plugin's error JSON goes to our stdout unchanged.
    [[ -n $output ]] && printf '%s\n' "$output"
    echo "cni-exec.sh: $type $command failed (exit $rc)" >&2
    exit "$rc"
  fi
  if [[ $command == ADD ]]; then
    prev=$output
  fi
done

case $command in
  ADD)
    mkdir -p "$cache_dir"
    jq -n --argjson result "$prev" --argjson rc "$runtime_config" --arg args "$cni_args" \
      --argjson config "$conflist" \
      '{result: $result, runtimeConfig: $rc, cniArgs: $args, config: $config}' >"$cache_file.tmp.$$"
    mv -f "$cache_file.tmp.$$" "$cache_file"
    printf '%s\n' "$prev"
    ;;
  DEL) rm -f "$cache_file" ;;
  CHECK) ;;
esac
