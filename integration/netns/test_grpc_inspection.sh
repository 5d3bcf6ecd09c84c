#!/usr/bin/env bash
# Every service started by up.sh can be inspected with standard gRPC tools:
# server reflection lists its ebpfcni.*.v1 service, grpc.health.v1.Health
# and the reflection service itself, and grpc.health.v1 Check answers SERVING
# for "" and for the service's own name. An unknown service name is
# NOT_FOUND, as the health protocol requires.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
itest_init grpc 7

node_up
declare -A SERVICE_NAME=(
  [ipam]=ebpfcni.ipam.v1.IpamService
  [datapath]=ebpfcni.datapath.v1.DatapathService
  [identity]=ebpfcni.identity.v1.IdentityService
)
for svc in ipam datapath identity; do
  socket=$EBPF_CNI_RUN_DIR/$svc.sock
  log "$svc on $socket"
  check "$svc socket exists" test -S "$socket"
  expect_eq "$svc socket mode" 660 "$(stat -c %a "$socket")"

  listed=$("$PROBE" services "$socket") || fail "$svc: reflection failed"
  for want in "${SERVICE_NAME[$svc]}" grpc.health.v1.Health grpc.reflection.v1alpha.ServerReflection; do
    check "$svc lists $want via reflection (got: $(tr '\n' ' ' <<<"$listed"))" grep -qx "$want" <<<"$listed"
  done
  # Each socket hosts exactly its own API: no other ebpfcni service leaks in.
  expect_eq "$svc: ebpfcni services listed" "${SERVICE_NAME[$svc]}" "$(grep '^ebpfcni\.' <<<"$listed")"

  expect_eq "$svc health ''" SERVING "$("$PROBE" health "$socket")"
  expect_eq "$svc health ${SERVICE_NAME[$svc]}" SERVING "$("$PROBE" health "$socket" "${SERVICE_NAME[$svc]}")"
  rc=0
  err=$("$PROBE" health "$socket" ebpfcni.nope.v1.Nope 2>&1) || rc=$?
  expect_eq "$svc health of an unknown service fails" 1 "$rc"
  check "$svc: unknown service is NOT_FOUND (code 5): $err" grep -q "code 5" <<<"$err"
done

log "read-only List RPCs answer on a fresh node"
expect_eq "no endpoints" 0 "$(endpoint_count)"
expect_eq "no allocations" 0 "$(allocation_count)"
pools=$("$PROBE" pools "$EBPF_CNI_RUN_DIR/ipam.sock")
expect_eq "IPv4 pool" "$EBPF_CNI_POD_CIDR" "$(jq -r '.pools[] | select(.family == "IP_FAMILY_IPV4") | .cidr' <<<"$pools")"
expect_eq "IPv6 pool" "$EBPF_CNI_POD_CIDR6" "$(jq -r '.pools[] | select(.family == "IP_FAMILY_IPV6") | .cidr' <<<"$pools")"

log "after down.sh the sockets are gone and health fails fast"
node_down
for svc in ipam datapath identity; do
  check "$svc socket removed" test ! -e "$EBPF_CNI_RUN_DIR/$svc.sock"
  start=$SECONDS
  check "$svc health fails when down" bash -c "! '$PROBE' health '$EBPF_CNI_RUN_DIR/$svc.sock' 2>/dev/null"
  (( SECONDS - start <= 6 )) || fail "health check of a stopped service took $((SECONDS - start))s"
done
