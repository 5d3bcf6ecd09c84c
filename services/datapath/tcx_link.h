#pragma once
// TCX (kernel >= 6.6): BPF programs on an interface's tc ingress/egress
// hooks as bpf_links, without a qdisc. libbpf 1.1 predates TCX, so these
// wrap the generic BPF_LINK_CREATE / BPF_PROG_QUERY / BPF_OBJ_GET_INFO_BY_FD
// calls with TCX's attach types and link-info layout (values from the
// kernel's uapi linux/bpf.h; Debian 12's headers are 6.1).
#include <cstdint>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "services/datapath/tc_attachment.h"

namespace ebpfcni::datapath {

// enum bpf_attach_type / enum bpf_link_type values.
inline constexpr int kBpfTcxIngress = 46;
inline constexpr int kBpfTcxEgress = 47;
inline constexpr uint32_t kBpfLinkTypeTcx = 11;

int TcxAttachType(TcDirection direction);

// Appends `prog_fd` to the interface's TCX chain of `direction`; returns the
// link's fd (the caller owns it). The program stays attached while the
// link is open or pinned.
absl::StatusOr<int> CreateTcxLink(int prog_fd, int ifindex, TcDirection direction);

struct TcxLinkInfo {
  uint32_t link_id = 0;
  uint32_t prog_id = 0;
  // 0 once the interface is gone (the link is then defunct).
  uint32_t ifindex = 0;
  int attach_type = 0;
};

// NOT_FOUND-free: fails only when `link_fd` is not a TCX link.
absl::StatusOr<TcxLinkInfo> GetTcxLinkInfo(int link_fd);

// Ids of every program in the interface's TCX chain of `direction`, first
// to run first (ours and anybody else's). Empty when none.
absl::StatusOr<std::vector<uint32_t>> QueryTcxPrograms(int ifindex, TcDirection direction);

}  // namespace ebpfcni::datapath
