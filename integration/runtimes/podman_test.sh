#!/usr/bin/env bash
# podman (4.3, CNI network backend) runs two busybox containers on a CNI
# network: they get addresses from the network's pool, ping each other, talk
# TCP (httpd/wget and nc), a published port (-p) reaches a container from the
# host, and removing them leaves nothing behind.
#
# Usage: podman_test.sh --cni=bridge     Debian's bridge+host-local (the
#                                        harness's known-good reference)
#        podman_test.sh --cni=ebpf-cni   this project, started with
#                                        deploy/local/up.sh (needs
#                                        EBPF_CNI_BUILD_DIR)
# Runs as root against the real kernel; everything lives under a private
# /tmp/ebpfcni-rt-podman.* dir and is removed at exit.
source "$(dirname "$0")/lib.sh"

rt_parse_mode "$@"
rt_init "podman-$RT_MODE" 280

netns_before=$(ls /run/netns 2>/dev/null | sort)
rt_setup_network

rt_build_rootfs "$RT_WORK/rootfs" || rt_die "cannot build rootfs"

# containers.conf: CNI backend pointed at our private conf dir. runc because
# crun 1.8 refuses this VM's hybrid cgroup layout; explicit ulimits because
# root lacks CAP_SYS_RESOURCE here and podman's defaults exceed the hard limit;
# file locks and events so nothing is shared with other podman users.
plugin_dirs=$(printf '"%s",' "${RT_BIN_DIRS[@]}")
cat >"$RT_WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[network]
network_backend = "cni"
network_config_dir = "$RT_CONF_DIR"
cni_plugin_dirs = [${plugin_dirs%,}]
default_network = "$RT_NET_NAME"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$RT_WORK/events.log"
lock_type = "file"
tmp_dir = "$RT_WORK/tmp"
EOF
export CONTAINERS_CONF="$RT_WORK/containers.conf"
# Registries/policy/storage config are irrelevant (local rootfs) but podman
# reads them; point storage.conf at nothing so the flags below rule.
export CONTAINERS_STORAGE_CONF="$RT_WORK/storage.conf"
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' \
  "$RT_WORK/root" "$RT_WORK/runroot" >"$CONTAINERS_STORAGE_CONF"

podman_() {
  timeout 60 podman --root "$RT_WORK/root" --runroot "$RT_WORK/runroot" \
    --tmpdir "$RT_WORK/tmp" "$@"
}
export -f podman_ 2>/dev/null
rt_defer "CONTAINERS_CONF='$CONTAINERS_CONF' CONTAINERS_STORAGE_CONF='$CONTAINERS_STORAGE_CONF' \
  podman --root '$RT_WORK/root' --runroot '$RT_WORK/runroot' --tmpdir '$RT_WORK/tmp' \
  system reset -f"
rt_defer "CONTAINERS_CONF='$CONTAINERS_CONF' CONTAINERS_STORAGE_CONF='$CONTAINERS_STORAGE_CONF' \
  podman --root '$RT_WORK/root' --runroot '$RT_WORK/runroot' --tmpdir '$RT_WORK/tmp' \
  rm -af -t 0"

podman_ network ls --format '{{.Name}}' | grep -qx "$RT_NET_NAME" ||
  rt_die "podman does not see network $RT_NET_NAME in $RT_CONF_DIR"

host_port=$((20000 + 16#${RT_TAG:0:4} % 10000))
c1="rt-$RT_TAG-c1"
c2="rt-$RT_TAG-c2"
podman_ run -d --name "$c1" --network "$RT_NET_NAME" --rootfs "$RT_WORK/rootfs" \
  /bin/sleep 600 >/dev/null || rt_die "podman run $c1 failed"
podman_ run -d --name "$c2" --network "$RT_NET_NAME" -p "127.0.0.1:$host_port:8080" \
  --rootfs "$RT_WORK/rootfs" /bin/httpd -f -p 8080 -h /www >/dev/null ||
  rt_die "podman run $c2 (with -p) failed"

ip_of() {
  podman_ inspect -f "{{(index .NetworkSettings.Networks \"$RT_NET_NAME\").IPAddress}}" "$1"
}
ip6_of() {
  podman_ inspect -f "{{(index .NetworkSettings.Networks \"$RT_NET_NAME\").GlobalIPv6Address}}" "$1"
}
ip1=$(ip_of "$c1")
ip2=$(ip_of "$c2")
ip6_1=$(ip6_of "$c1")
ip6_2=$(ip6_of "$c2")
rt_log "$c1=$ip1,$ip6_1 $c2=$ip2,$ip6_2"
rt_expect "$c1 address $ip1 is from the pool ${RT_SUBNET_PREFIX}0" test "${ip1%.*}." = "$RT_SUBNET_PREFIX"
rt_expect "$c2 address $ip2 is from the pool ${RT_SUBNET_PREFIX}0" test "${ip2%.*}." = "$RT_SUBNET_PREFIX"
rt_expect "the two containers got different addresses" test "$ip1" != "$ip2"
rt_expect "$c1 IPv6 address $ip6_1 is from the pool ${RT_SUBNET6_PREFIX}" test "${ip6_1#"$RT_SUBNET6_PREFIX"}" != "$ip6_1"
rt_expect "$c2 IPv6 address $ip6_2 is from the pool ${RT_SUBNET6_PREFIX}" test "${ip6_2#"$RT_SUBNET6_PREFIX"}" != "$ip6_2"
rt_expect "eth0 inside $c1 carries $ip1" \
  bash -c "podman_ exec '$c1' ip -4 -o addr show eth0 | grep -q ' $ip1/'"
rt_expect_pod_state_count 2

rt_expect "$c1 pings $c2" podman_ exec "$c1" ping -q -c 2 -W 2 "$ip2"
rt_expect "$c2 pings $c1" podman_ exec "$c2" ping -q -c 2 -W 2 "$ip1"
# Duplicate address detection may keep a fresh IPv6 address tentative for a
# moment; allow a few seconds.
rt_expect "$c1 pings $c2 over IPv6" \
  rt_wait_until 8 podman_ exec "$c1" ping6 -q -c 1 -W 1 "$ip6_2"
# No `wget -T`: Debian's static busybox 1.35 wget segfaults with it; podman_
# already bounds the call with timeout(1).
rt_expect "$c1 fetches $c2's page over HTTP" \
  timeout 15 bash -c "podman_ exec '$c1' wget -q -O - 'http://$ip2:8080/index.html' | grep -q 'hello from $RT_TAG'"

# nc in the other direction: $c1 listens, $c2 sends one line. busybox nc
# exits at end of input on either side, and a detached exec's stdin is at
# end already: the listener would quit right after accept() whenever the
# line came a moment after the connection (it did, under CI load). A pipe
# from sleep keeps its stdin open.
podman_ exec -d "$c1" sh -c 'sleep 30 | nc -l -p 9000 > /tmp/received' >/dev/null
rt_wait_until 5 podman_ exec "$c1" sh -c 'cat /proc/net/tcp /proc/net/tcp6 | grep -q ":2328 "' ||
  rt_fail "nc did not start listening in $c1"
podman_ exec "$c2" sh -c "echo 'nc-$RT_TAG' | nc -w 3 $ip1 9000"
rt_expect "$c1 received the line $c2 sent with nc" \
  rt_wait_until 5 bash -c "podman_ exec '$c1' cat /tmp/received | grep -qx 'nc-$RT_TAG'"

rt_expect "published port 127.0.0.1:$host_port reaches $c2 (portmap)" \
  bash -c "curl -sf --max-time 5 'http://127.0.0.1:$host_port/index.html' | grep -q 'hello from $RT_TAG'"

podman_ rm -f -t 0 "$c1" "$c2" >/dev/null || rt_fail "podman rm failed"
rt_expect "no container left" test -z "$(podman_ ps -aq)"
rt_expect_no_pod_leftovers
netns_after=$(ls /run/netns 2>/dev/null | sort)
new_netns=$(comm -13 <(echo "$netns_before") <(echo "$netns_after") | grep -E '^(cni|netns)-' || true)
rt_expect "podman left no network namespace (new: ${new_netns:-none})" test -z "$new_netns"

((RT_FAILURES == 0)) && rt_log "PASS"
