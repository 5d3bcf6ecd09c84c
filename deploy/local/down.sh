#!/usr/bin/env bash
# Stops an ebpf-cni node started by up.sh and removes what up.sh installed:
# the daemons (SIGTERM, bounded wait, then SIGKILL), their pid files and
# sockets, the CNI binary, the conflist and plugin links up.sh created.
#
# The state directory (IPAM allocations, cni-exec.sh's cached results, logs,
# the policy agent's manifests)
# is persistent and kept, as are
# the BPF pins. EBPF_CNI_PURGE=1 (or --purge) removes those too; pods still
# attached to the node lose their datapath state then, so purge only after
# their DEL.
#
# Same EBPF_CNI_* settings as up.sh (see deploy/local/env.sh).
set -euo pipefail
# shellcheck source=deploy/local/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ebpf_cni_require_root

purge=${EBPF_CNI_PURGE:-0}
for arg in "$@"; do
  case $arg in
    --purge) purge=1 ;;
    *) ebpf_cni_die "unknown argument '$arg' (usage: down.sh [--purge])" ;;
  esac
done

# Reverse start order: the policy agent first (it calls the others), and
# nothing calls into IPAM once the others are gone.
for ((i = ${#EBPF_CNI_OPTIONAL_SERVICES[@]} - 1; i >= 0; i--)); do
  ebpf_cni_stop_service "${EBPF_CNI_OPTIONAL_SERVICES[i]}"
done
for ((i = ${#EBPF_CNI_SERVICES[@]} - 1; i >= 0; i--)); do
  ebpf_cni_stop_service "${EBPF_CNI_SERVICES[i]}"
done

rm -f "$EBPF_CNI_CONFLIST" "$EBPF_CNI_BIN_DIR/ebpf-cni"
links=$EBPF_CNI_RUN_DIR/installed-links
if [[ -f $links ]]; then
  while read -r link; do
    [[ -L $link ]] && rm -f "$link"
  done <"$links"
  rm -f "$links"
fi
rmdir "$EBPF_CNI_RUN_DIR" 2>/dev/null || true

if [[ $purge == 1 ]]; then
  ebpf_cni_log "purging state $EBPF_CNI_STATE_DIR and BPF pins $EBPF_CNI_BPF_DIR"
  for dir in "$EBPF_CNI_STATE_DIR" "$EBPF_CNI_BPF_DIR"; do
    [[ $dir == / || $dir == /sys/fs/bpf ]] && ebpf_cni_die "refusing to purge '$dir'"
  done
  rm -rf "$EBPF_CNI_STATE_DIR"
  # Unlinking pins releases maps/programs not held by anything else.
  rm -rf "$EBPF_CNI_BPF_DIR"
fi
ebpf_cni_log "node down"
