#!/usr/bin/env bash
# containerd 1.6 (a private instance) runs two busybox containers with
# `ctr run --cni`: they get addresses from the CNI network's pool, ping each
# other, talk HTTP, and stopping them runs CNI DEL so nothing is left behind.
#
# Usage: containerd_test.sh --cni=bridge | --cni=ebpf-cni   (see podman_test.sh)
#
# Where `ctr run --cni` looks for CNI (containerd 1.6.20, Debian build):
# ctr calls go-cni itself (client side, not the daemon) with its built-in
# defaults: the first conflist in /etc/cni/net.d, plugin binaries searched
# in [/opt/cni/bin /usr/lib/cni]; no flag or environment variable changes
# this (the CRI plugin's [cni] conf_dir/bin_dir in config.toml do not apply
# to ctr). Rather than installing our conflist into the host's
# /etc/cni/net.d, every ctr invocation here runs in a private mount
# namespace (unshare -m) in which our conf dir is bind-mounted over
# /etc/cni/net.d and a plugin dir of our own over /usr/lib/cni, so nothing
# on the host changes and a crash cannot leave a conflist behind.
#
# `ctr run -d` never runs CNI DEL (only the foreground `ctr run --rm` path
# does, after the task exits), so containers run in the foreground in the
# background of this script and are stopped with `ctr task kill`.
source "$(dirname "$0")/lib.sh"

rt_parse_mode "$@"
rt_init "containerd-$RT_MODE" 280

rt_setup_network

source "$(dirname "$0")/containerd_lib.sh"

rt_build_rootfs "$RT_WORK/rootfs" || rt_die "cannot build rootfs"
image="docker.io/library/ebpfcni-rt-busybox:$RT_TAG"
rt_build_oci_image "$RT_WORK/rootfs" "$image" "$RT_WORK/image.tar" || rt_die "cannot build OCI image"

rt_start_containerd "rt-$RT_TAG"
sock=$RT_CTR_SOCK
namespace=$RT_CTR_NS
export sock namespace

ctr_ images import --snapshotter native "$RT_WORK/image.tar" >/dev/null || rt_die "image import failed"
rt_expect "image $image imported" bash -c "ctr_ images ls -q | grep -qx '$image'"

# ctr_run_cni NAME CMD... : `ctr run --rm --cni` in its private mount
# namespace, in the background; prints the ctr pid.
ctr_run_cni() {
  local name=$1
  shift
  unshare --mount --propagation private bash -c '
      mount --bind "$1" /etc/cni/net.d && mount --bind "$2" /usr/lib/cni || exit 97
      shift 2
      exec ctr -a "$sock" -n "$namespace" run --rm --cni --snapshotter native "$@"' \
    ctr-run "$RT_CONF_DIR" "$RT_WORK/cni-bin" "$image" "$name" "$@" \
    </dev/null >"$RT_WORK/$name.log" 2>&1 &
  echo $!
}

task_pid() { ctr_ tasks ls | awk -v n="$1" '$1 == n && $3 == "RUNNING" {print $2}'; }
running() { [[ -n $(task_pid "$1") ]]; }
ip_in() {
  nsenter --net="/proc/$(task_pid "$1")/ns/net" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1
}
ip6_in() {
  nsenter --net="/proc/$(task_pid "$1")/ns/net" ip -6 -o addr show eth0 scope global |
    awk '{print $4}' | cut -d/ -f1
}

c1="c1"
c2="c2"
ctr1=$(ctr_run_cni "$c1" /bin/sleep 600)
ctr2=$(ctr_run_cni "$c2" /bin/httpd -f -p 8080 -h /www)
rt_defer "kill $ctr1 $ctr2 2>/dev/null; true"
rt_wait_until 30 running "$c1" || { cat "$RT_WORK/$c1.log" >&2; rt_die "$c1 did not start"; }
rt_wait_until 30 running "$c2" || { cat "$RT_WORK/$c2.log" >&2; rt_die "$c2 did not start"; }
# The task is RUNNING before ctr has finished CNI ADD; wait for eth0.
export -f ip_in task_pid
rt_wait_until 30 bash -c "[[ -n \$(ip_in $c1 2>/dev/null) && -n \$(ip_in $c2 2>/dev/null) ]]" ||
  { cat "$RT_WORK/$c1.log" "$RT_WORK/$c2.log" >&2; rt_die "containers got no eth0 address"; }

ip1=$(ip_in "$c1")
ip2=$(ip_in "$c2")
rt_log "$c1=$ip1 $c2=$ip2"
rt_expect "$c1 address $ip1 is from the pool ${RT_SUBNET_PREFIX}0" test "${ip1%.*}." = "$RT_SUBNET_PREFIX"
rt_expect "$c2 address $ip2 is from the pool ${RT_SUBNET_PREFIX}0" test "${ip2%.*}." = "$RT_SUBNET_PREFIX"
rt_expect "the two containers got different addresses" test "$ip1" != "$ip2"
ip6_1=$(ip6_in "$c1")
ip6_2=$(ip6_in "$c2")
rt_expect "$c1 IPv6 address '$ip6_1' is from the pool ${RT_SUBNET6_PREFIX}" test "${ip6_1#"$RT_SUBNET6_PREFIX"}" != "$ip6_1"
rt_expect "$c2 IPv6 address '$ip6_2' is from the pool ${RT_SUBNET6_PREFIX}" test "${ip6_2#"$RT_SUBNET6_PREFIX"}" != "$ip6_2"
rt_expect_pod_state_count 2

rt_expect "$c1 pings $c2" ctr_ tasks exec --exec-id "ping-$RANDOM" "$c1" ping -q -c 2 -W 2 "$ip2"
rt_expect "$c2 pings $c1" ctr_ tasks exec --exec-id "ping-$RANDOM" "$c2" ping -q -c 2 -W 2 "$ip1"
# A fresh IPv6 address may be tentative (DAD) for a moment.
rt_expect "$c1 pings $c2 over IPv6" \
  rt_wait_until 8 bash -c "ctr_ tasks exec --exec-id ping6-\$RANDOM $c1 ping6 -q -c 1 -W 1 $ip6_2"
rt_expect "$c1 fetches $c2's page over HTTP" timeout 15 bash -c \
  "ctr_ tasks exec --exec-id wget-$RANDOM $c1 wget -q -O - http://$ip2:8080/index.html | grep -q 'hello from $RT_TAG'"

# Stop both: ctr sees the task exit, runs CNI DEL and deletes the container.
ctr_ tasks kill -s KILL "$c1"
ctr_ tasks kill -s KILL "$c2"
for pid in "$ctr1" "$ctr2"; do
  rt_wait_until 30 bash -c "! kill -0 $pid 2>/dev/null" || rt_fail "ctr run (pid $pid) did not exit after its task was killed"
done
rt_expect "no container left in containerd" test -z "$(ctr_ containers ls -q)"
rt_expect "ctr ran CNI DEL without error" bash -c "! grep -qi 'error' '$RT_WORK/$c1.log' '$RT_WORK/$c2.log'"
rt_expect_no_pod_leftovers

((RT_FAILURES == 0)) && rt_log "PASS"
