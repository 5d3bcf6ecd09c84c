# Shared harness for the container-runtime integration tests (sourced, not run).
#
# Every test gets one private work dir (/tmp/ebpfcni-rt-<name>.XXXXXX) and a
# short tag derived from it; every interface, network, bridge and pool it
# creates carries that tag, so two runs never collide and leak checks can
# look for exactly what this run made. Clean-up steps are registered with
# rt_defer as soon as the thing they undo exists, and run in reverse order on
# any exit (success, failure, SIGTERM from the watchdog or from ctest).
#
# Needs bash >= 4.2 (printf '%(...)T'), jq, iproute2, util-linux (unshare,
# nsenter) and busybox-static; tools/setup-deps.sh installs them.

set -uo pipefail

RT_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RT_REPO_ROOT=$(cd "$RT_LIB_DIR/../.." && pwd)

RT_CLEANUPS=()
RT_FAILURES=0
RT_WATCHDOG_PID=

rt_log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

rt_fail() {
  rt_log "FAIL: $*"
  RT_FAILURES=$((RT_FAILURES + 1))
}

# Aborts the test; the EXIT trap still tears everything down.
rt_die() {
  rt_log "FATAL: $*"
  exit 1
}

# rt_expect DESCRIPTION COMMAND... : records a failure unless COMMAND succeeds.
rt_expect() {
  local what=$1
  shift
  if "$@"; then
    rt_log "ok: $what"
  else
    rt_fail "$what (command: $*)"
  fi
}

# rt_defer COMMAND-STRING : run at exit, last registered first.
rt_defer() { RT_CLEANUPS+=("$1"); }

rt_run_cleanups() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n $RT_WATCHDOG_PID ]] && kill "$RT_WATCHDOG_PID" 2>/dev/null
  if ((status == 0 && RT_FAILURES > 0)); then status=1; fi
  # Clean-up steps may keep evidence when the test failed.
  export RT_EXIT_STATUS=$status
  local i
  for ((i = ${#RT_CLEANUPS[@]} - 1; i >= 0; i--)); do
    # Each step is bounded so one stuck clean-up cannot hide the others.
    timeout 60 bash -c "${RT_CLEANUPS[i]}" >>"$RT_WORK/cleanup.log" 2>&1 ||
      rt_log "cleanup step failed (see $RT_WORK/cleanup.log): ${RT_CLEANUPS[i]}"
  done
  # Never rm -rf through a mount a failed clean-up left behind.
  awk -v w="$RT_WORK/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r |
    while read -r mnt; do umount -l "$mnt" || true; done
  if [[ ${RT_KEEP_WORK:-0} == 1 ]]; then
    rt_log "work dir kept (RT_KEEP_WORK=1): $RT_WORK"
  elif ((status == 0)); then
    rm -rf "$RT_WORK"
  else
    # Keep only the logs of a failed run (images and root filesystems go).
    find "$RT_WORK" -mindepth 1 -maxdepth 1 ! -name '*.log' -exec rm -rf {} +
    rt_log "logs of the failed run kept in $RT_WORK"
  fi
  exit "$status"
}

# rt_init NAME SECONDS : creates the work dir, the tag and the exit trap, and
# starts a watchdog that SIGTERMs the test before ctest's own TIMEOUT would
# SIGKILL it (a SIGKILL would skip the clean-up).
rt_init() {
  local name=$1 budget=$2
  [[ $(id -u) -eq 0 ]] || { echo "$name: must run as root" >&2; exit 1; }
  RT_WORK=$(mktemp -d "/tmp/ebpfcni-rt-$name.XXXXXX")
  # 5 hex digits from the random suffix: short enough for 15-char ifnames.
  RT_TAG=$(printf '%s' "$RT_WORK" | sha256sum | cut -c1-5)
  export RT_WORK RT_TAG
  trap rt_run_cleanups EXIT
  trap 'rt_log "terminated"; exit 143' INT TERM
  # The watchdog's own sleep is killed with it, and it writes nowhere, so it
  # never keeps a caller's pipe open.
  (
    sleep "$budget" &
    sleeper=$!
    trap 'kill $sleeper 2>/dev/null; exit 0' TERM
    wait $sleeper
    echo "watchdog: $name exceeded ${budget}s, terminating" >>"$RT_WORK/watchdog.log"
    kill -TERM $$
  ) </dev/null >/dev/null 2>&1 &
  RT_WATCHDOG_PID=$!
  rt_log "test $name: work dir $RT_WORK, tag $RT_TAG"
}

# rt_wait_until SECONDS COMMAND... : polls COMMAND every 0.2 s.
rt_wait_until() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    "$@" && return 0
    sleep 0.2
  done
  "$@"
}

# --- container images ------------------------------------------------------

RT_APPLETS=(sh ping ping6 wget nc ip httpd sleep cat echo grep ls ifconfig hostname true)

# rt_build_rootfs DIR : a minimal root filesystem from Debian's busybox-static
# (no registry access here), with a page for httpd to serve.
rt_build_rootfs() {
  local dir=$1
  mkdir -p "$dir"/{bin,etc,proc,sys,dev,tmp,www} || return 1
  cp /bin/busybox "$dir/bin/busybox" || return 1
  local applet
  for applet in "${RT_APPLETS[@]}"; do ln -sf busybox "$dir/bin/$applet"; done
  echo "root:x:0:0:root:/:/bin/sh" >"$dir/etc/passwd"
  echo "root:x:0:" >"$dir/etc/group"
  echo "hello from $RT_TAG" >"$dir/www/index.html"
}

_rt_blob() { # _rt_blob LAYOUT FILE -> prints "digest size", moves FILE into blobs/
  local layout=$1 file=$2 digest size
  digest=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mv "$file" "$layout/blobs/sha256/$digest"
  echo "$digest $size"
}

# rt_build_oci_image ROOTFS REF OUT_TAR [CMD_JSON] : an OCI image layout
# tarball with a single uncompressed layer, importable by `ctr images
# import`. CMD_JSON is the image's default command (default ["/bin/sh"]).
rt_build_oci_image() {
  local rootfs=$1 ref=$2 out=$3 cmd=${4:-'["/bin/sh"]'}
  local layout
  layout=$(mktemp -d "$RT_WORK/oci.XXXX")
  mkdir -p "$layout/blobs/sha256"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 \
    -C "$rootfs" -cf "$layout/layer.tar" . || return 1
  local layer layer_size config config_size manifest manifest_size
  read -r layer layer_size < <(_rt_blob "$layout" "$layout/layer.tar")
  jq -cn --arg diff "sha256:$layer" --argjson cmd "$cmd" '{architecture:"amd64", os:"linux",
      config:{Cmd:$cmd, Env:["PATH=/bin"]},
      rootfs:{type:"layers", diff_ids:[$diff]}}' >"$layout/config.json"
  read -r config config_size < <(_rt_blob "$layout" "$layout/config.json")
  jq -cn --arg c "sha256:$config" --argjson cs "$config_size" \
    --arg l "sha256:$layer" --argjson ls "$layer_size" '{schemaVersion:2,
      mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$c, size:$cs},
      layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar", digest:$l, size:$ls}]}' \
    >"$layout/manifest.json"
  read -r manifest manifest_size < <(_rt_blob "$layout" "$layout/manifest.json")
  jq -cn --arg m "sha256:$manifest" --argjson ms "$manifest_size" --arg ref "$ref" \
    '{schemaVersion:2, manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",
      digest:$m, size:$ms, annotations:{"io.containerd.image.name":$ref,
      "org.opencontainers.image.ref.name":($ref | sub(".*:"; ""))}}]}' >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  tar -C "$layout" -cf "$out" oci-layout index.json blobs || return 1
  rm -rf "$layout"
}

# --- CNI networks ----------------------------------------------------------

# Four hex digits of the tag as an IPv6 group in canonical text form (no
# leading zeros, never zero), so address prefixes compare as strings.
rt_tag_hextet() { printf '%x' $((16#${RT_TAG:0:4} | 0x1000)); }

# rt_setup_bridge_network : the known-good reference (Debian's bridge +
# host-local, then portmap and bandwidth like up.sh's conflist) in a private
# conf dir. Sets RT_NET_NAME,
# RT_CONF_DIR, RT_BIN_DIRS (array), RT_IFACE_PREFIX (host-side names to
# look for in leak checks), RT_SUBNET_PREFIX and RT_SUBNET6_PREFIX (text
# prefixes of the pools' addresses; both variants are dual-stack).
rt_setup_bridge_network() {
  local octet=$((16#${RT_TAG:0:2} % 200 + 20))
  RT_NET_NAME="rt-$RT_TAG"
  RT_CONF_DIR="$RT_WORK/net.d"
  RT_BIN_DIRS=(/usr/lib/cni)
  RT_BRIDGE="rtbr$RT_TAG"
  RT_SUBNET_PREFIX="10.231.$octet."
  RT_SUBNET6_PREFIX="fd00:ec1:$(rt_tag_hextet)::"
  RT_IFACE_PREFIX="$RT_BRIDGE"
  mkdir -p "$RT_CONF_DIR" "$RT_WORK/host-local"
  jq -n --arg name "$RT_NET_NAME" --arg br "$RT_BRIDGE" \
    --arg subnet "${RT_SUBNET_PREFIX}0/24" --arg subnet6 "${RT_SUBNET6_PREFIX}/64" \
    --arg data "$RT_WORK/host-local" '{
      cniVersion:"0.4.0", name:$name, plugins:[
        {type:"bridge", bridge:$br, isGateway:true, ipMasq:false,
         ipam:{type:"host-local", ranges:[[{subnet:$subnet}], [{subnet:$subnet6}]],
               dataDir:$data}},
        {type:"portmap", capabilities:{portMappings:true}},
        {type:"bandwidth", capabilities:{bandwidth:true}}]}' \
    >"$RT_CONF_DIR/00-$RT_NET_NAME.conflist"
  # The bridge plugin never deletes its bridge; we do.
  rt_defer "ip link del $RT_BRIDGE 2>/dev/null || true"
}

# Finds a binary built in EBPF_CNI_BUILD_DIR by name.
rt_find_built() {
  local name=$1 path
  path=$(find "$EBPF_CNI_BUILD_DIR" -type f -name "$name" -perm -u+x -print -quit 2>/dev/null)
  [[ -n $path ]] || return 1
  echo "$path"
}

# rt_setup_ebpf_cni_network : starts this node's services with
# deploy/local/up.sh in test-unique dirs and pools, and registers down.sh
# (with purge) as clean-up. Sets the same variables as the bridge variant
# plus RT_RUN_DIR (the services' sockets).
rt_setup_ebpf_cni_network() {
  : "${EBPF_CNI_BUILD_DIR:?set EBPF_CNI_BUILD_DIR to the CMake build dir}"
  local up="$RT_REPO_ROOT/deploy/local/up.sh" down="$RT_REPO_ROOT/deploy/local/down.sh"
  [[ -x $up && -x $down ]] || rt_die "deploy/local/up.sh or down.sh missing"
  local octet=$((16#${RT_TAG:0:2} % 200 + 20))
  # shellcheck source=../../deploy/local/env.sh
  source "$RT_REPO_ROOT/deploy/local/env.sh"
  ebpf_cni_private_node "$RT_WORK" "rt-$RT_TAG" "rt$RT_TAG" "10.232.$octet.0/24" "fd00:ec:$(rt_tag_hextet)::/112"
  RT_NET_NAME=$EBPF_CNI_NETWORK_NAME
  RT_CONF_DIR=$EBPF_CNI_CONF_DIR
  RT_RUN_DIR=$EBPF_CNI_RUN_DIR
  RT_BIN_DIRS=("$EBPF_CNI_BIN_DIR" /usr/lib/cni)
  RT_SUBNET_PREFIX="10.232.$octet."
  RT_SUBNET6_PREFIX="fd00:ec:$(rt_tag_hextet)::"
  RT_IFACE_PREFIX=$EBPF_CNI_VETH_PREFIX
  RT_PROBE=$(rt_find_built ebpf-cni-grpc-probe) || rt_die "ebpf-cni-grpc-probe not built in $EBPF_CNI_BUILD_DIR"
  # Registered before up.sh so a half-started node is stopped too.
  rt_defer "EBPF_CNI_PURGE=1 '$down'"
  # down.sh purges the state dir; keep the daemons' and CNI's logs of a
  # failed run first (runs before the purge: registered later).
  rt_defer "[[ \$RT_EXIT_STATUS == 0 ]] || for f in '$EBPF_CNI_LOG_DIR'/*.log; do
      cp \"\$f\" '$RT_WORK'/node-\"\${f##*/}\"; done; true"
  rt_log "starting node: $up"
  timeout 120 "$up" >"$RT_WORK/up.log" 2>&1 || {
    cat "$RT_WORK/up.log" >&2
    rt_die "up.sh failed"
  }
  ls "$RT_CONF_DIR"/*.conflist >/dev/null 2>&1 || rt_die "up.sh installed no conflist in $RT_CONF_DIR"
}

# --- leak checks -------------------------------------------------------------

rt_host_links_with_prefix() {
  ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$1" || true
}

# rt_expect_no_pod_leftovers : no pod-side host interface of this run, and
# for ebpf-cni no IPAM allocation and no datapath endpoint.
rt_expect_no_pod_leftovers() {
  local links
  links=$(rt_host_links_with_prefix "$RT_IFACE_PREFIX" | grep -v "^${RT_BRIDGE:-__none__}\$" || true)
  rt_expect "no host interface named $RT_IFACE_PREFIX* left" test -z "$links"
  [[ -n $links ]] && rt_log "left over: $links"
  if [[ -d $RT_WORK/host-local/$RT_NET_NAME ]]; then
    # host-local keeps one file per allocated address; DEL removes it.
    local held
    held=$(ls "$RT_WORK/host-local/$RT_NET_NAME" | grep -E '^[0-9a-f.:]+$' | grep -v '^last_reserved' || true)
    rt_expect "host-local holds no address (found: ${held:-none})" test -z "$held"
  fi
  local cached
  cached=$(ls /var/lib/cni/results 2>/dev/null | grep "^$RT_NET_NAME-" || true)
  rt_expect "libcni result cache holds nothing for $RT_NET_NAME" test -z "$cached"
  if [[ -n ${RT_PROBE:-} ]]; then
    local allocations endpoints
    allocations=$("$RT_PROBE" allocations "$RT_RUN_DIR/ipam.sock" | jq '.allocations | length')
    endpoints=$("$RT_PROBE" endpoints "$RT_RUN_DIR/datapath.sock" | jq '.endpoints | length')
    rt_expect "no IPAM allocation left (found ${allocations:-?})" test "${allocations:-x}" = 0
    rt_expect "no datapath endpoint left (found ${endpoints:-?})" test "${endpoints:-x}" = 0
  fi
}

# rt_expect_pod_state_count N : the services hold N allocations/endpoints.
rt_expect_pod_state_count() {
  local want=$1
  [[ -n ${RT_PROBE:-} ]] || return 0
  local allocations endpoints
  allocations=$("$RT_PROBE" allocations "$RT_RUN_DIR/ipam.sock" | jq '.allocations | length')
  endpoints=$("$RT_PROBE" endpoints "$RT_RUN_DIR/datapath.sock" | jq '.endpoints | length')
  rt_expect "$want IPAM allocations while running (found ${allocations:-?})" test "${allocations:-x}" = "$want"
  rt_expect "$want datapath endpoints while running (found ${endpoints:-?})" test "${endpoints:-x}" = "$want"
}

# rt_parse_mode ARGS : --cni=bridge (reference) or --cni=ebpf-cni.
rt_parse_mode() {
  RT_MODE=bridge
  local arg
  for arg in "$@"; do
    case $arg in
      --cni=bridge) RT_MODE=bridge ;;
      --cni=ebpf-cni) RT_MODE=ebpf-cni ;;
      *) echo "unknown argument: $arg (want --cni=bridge|ebpf-cni)" >&2; exit 2 ;;
    esac
  done
}

rt_setup_network() {
  if [[ $RT_MODE == bridge ]]; then rt_setup_bridge_network; else rt_setup_ebpf_cni_network; fi
}
