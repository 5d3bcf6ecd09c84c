# Private containerd 1.6 for the containerd tests (sourced after lib.sh and
# rt_setup_network).
#
# rt_start_containerd NAMESPACE [SANDBOX_IMAGE] : starts containerd with its
# own root, state and sockets under $RT_WORK, the CRI plugin pointed at this
# run's CNI conf dir and at $RT_WORK/cni-bin, and registers its shutdown.
# Sets RT_CTR_SOCK and RT_CTR_NS and defines ctr_ (bounded ctr in that
# namespace, exported for bash -c).
rt_start_containerd() {
  RT_CTR_NS=$1
  local sandbox_image=${2:-}
  RT_CTR_SOCK="$RT_WORK/containerd.sock"
  export RT_CTR_SOCK RT_CTR_NS

  # Plugin dir for both ctr (bind-mounted over /usr/lib/cni, see
  # containerd_test.sh) and the CRI plugin: copies of Debian's plugins
  # (symlinks back into /usr/lib/cni would resolve inside the bind mount)
  # plus whatever up.sh installed that Debian lacks (ebpf-cni itself; up.sh's
  # portmap/bandwidth entries are links to /usr/lib/cni and would loop).
  mkdir -p "$RT_WORK/cni-bin"
  cp -a /usr/lib/cni/. "$RT_WORK/cni-bin/"
  if [[ $RT_MODE == ebpf-cni ]]; then
    local plugin
    for plugin in "$EBPF_CNI_BIN_DIR"/*; do
      [[ -e $RT_WORK/cni-bin/${plugin##*/} ]] || ln -s "$plugin" "$RT_WORK/cni-bin/"
    done
  fi

  mkdir -p "$RT_WORK/containerd-root" "$RT_WORK/containerd-state"
  cat >"$RT_WORK/containerd.toml" <<EOF
version = 2
root = "$RT_WORK/containerd-root"
state = "$RT_WORK/containerd-state"
[grpc]
  address = "$RT_CTR_SOCK"
[ttrpc]
  address = "$RT_CTR_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  # root lacks CAP_SYS_RESOURCE on this VM: never lower oom_score_adj.
  restrict_oom_score_adj = true
  # Pod netns bind mounts under our state dir, not /run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  sandbox_image = "${sandbox_image:-registry.k8s.io/pause:3.6}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$RT_WORK/cni-bin"
    conf_dir = "$RT_CONF_DIR"
    max_conf_num = 1
EOF
  containerd --config "$RT_WORK/containerd.toml" >"$RT_WORK/containerd.log" 2>&1 &
  local pid=$!
  rt_defer "kill $pid 2>/dev/null; for i in \$(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.2; done; kill -9 $pid 2>/dev/null; true"
  rt_wait_until 15 test -S "$RT_CTR_SOCK" ||
    rt_die "containerd did not create $RT_CTR_SOCK (see $RT_WORK/containerd.log)"

  # Whatever a failed run left: kill and delete tasks, then containers.
  # Runs before containerd's own shutdown (registered later = runs first).
  rt_defer "ctr=(ctr -a '$RT_CTR_SOCK' -n '$RT_CTR_NS')
    for t in \$(\"\${ctr[@]}\" tasks ls -q); do \"\${ctr[@]}\" tasks kill -s KILL \$t; done
    sleep 1
    for t in \$(\"\${ctr[@]}\" tasks ls -q); do \"\${ctr[@]}\" tasks rm -f \$t; done
    for c in \$(\"\${ctr[@]}\" containers ls -q); do \"\${ctr[@]}\" containers rm \$c; done
    true"
}

ctr_() { timeout 60 ctr -a "$RT_CTR_SOCK" -n "$RT_CTR_NS" "$@"; }
export -f ctr_
