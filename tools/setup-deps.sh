#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing, the demo and the
# benchmarks of ebpf-cni need. Idempotent: when everything is already
# installed it returns without touching apt, so run-tests.sh and demo.sh can
# call it every time.
set -euo pipefail

PACKAGES=(
  # toolchain and build
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang llvm libbpf-dev bpftool
  # libraries
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev grpc-proto
  libabsl-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  libnl-3-dev libnl-route-3-dev nlohmann-json3-dev libyaml-cpp-dev
  libcurl4-openssl-dev libsqlite3-dev
  # node scripts, demo and integration tests
  sqlite3 iproute2 iputils-ping procps psmisc util-linux coreutils jq
  busybox-static iptables
  # fake Kubernetes API server (HTTPS) of the cluster-state tests; iperf3 and
  # sockperf (TCP request/response latency) for the datapath throughput
  # benchmark (bench/datapath/throughput)
  python3 iperf3 sockperf
  # container runtimes and the reference CNI plugins (portmap, bandwidth, loopback)
  podman containerd containernetworking-plugins uidmap
  # identity store
  etcd-server etcd-client
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup-deps.sh: must run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  [[ $status == ii* ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "setup-deps.sh: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "setup-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Another apt run (unattended-upgrades, a colleague) may hold the lock; wait
# for it instead of failing.
apt_opts=(-o DPkg::Lock::Timeout=300)
apt-get "${apt_opts[@]}" update -qq
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
