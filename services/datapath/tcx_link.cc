#include "services/datapath/tcx_link.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>

#include <absl/strings/str_cat.h>

namespace ebpfcni::datapath {
namespace {

// struct bpf_link_info as the kernel lays it out for a TCX link: the union
// of per-type info starts at offset 16 (it holds __aligned_u64 members);
// TCX's part is {ifindex, attach_type}. Padded well past the TCX part: the
// kernel fills min(its size, ours) and wants any excess zero.
struct RawTcxLinkInfo {
  uint32_t type;
  uint32_t id;
  uint32_t prog_id;
  uint32_t padding;
  uint32_t ifindex;
  uint32_t attach_type;
  uint8_t rest_of_union[64];
};
static_assert(sizeof(RawTcxLinkInfo) % 8 == 0);

// As TcErrnoStatus, but EINVAL from a TCX call usually means a kernel
// without TCX, which the message should say.
absl::Status ErrnoStatus(int err, const std::string& what) {
  if (err == EINVAL) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": ", std::strerror(err), " (does this kernel support TCX? it needs Linux 6.6 or newer)"));
  }
  return TcErrnoStatus(err, what);
}

}  // namespace

int TcxAttachType(TcDirection direction) {
  return direction == TcDirection::kIngress ? kBpfTcxIngress : kBpfTcxEgress;
}

absl::StatusOr<int> CreateTcxLink(int prog_fd, int ifindex, TcDirection direction) {
  // libbpf 1.1 passes unknown attach types through with target_fd, which
  // shares its place in bpf_attr with TCX's target_ifindex; flags 0 and no
  // relative program append ours at the end of the chain.
  int fd = bpf_link_create(prog_fd, ifindex, static_cast<bpf_attach_type>(TcxAttachType(direction)),
                           nullptr);
  if (fd < 0) {
    return ErrnoStatus(-fd, absl::StrCat("creating TCX ", TcDirectionName(direction),
                                         " link on ifindex ", ifindex));
  }
  return fd;
}

absl::StatusOr<TcxLinkInfo> GetTcxLinkInfo(int link_fd) {
  RawTcxLinkInfo raw{};
  uint32_t length = sizeof(raw);
  if (bpf_obj_get_info_by_fd(link_fd, &raw, &length) != 0) {
    return ErrnoStatus(errno, "reading BPF link info");
  }
  if (raw.type != kBpfLinkTypeTcx) {
    return absl::FailedPreconditionError(
        absl::StrCat("BPF link ", raw.id, " is of type ", raw.type, ", not a TCX link"));
  }
  return TcxLinkInfo{.link_id = raw.id,
                     .prog_id = raw.prog_id,
                     .ifindex = raw.ifindex,
                     .attach_type = static_cast<int>(raw.attach_type)};
}

absl::StatusOr<std::vector<uint32_t>> QueryTcxPrograms(int ifindex, TcDirection direction) {
  std::vector<uint32_t> ids(64);
  uint32_t count = static_cast<uint32_t>(ids.size());
  int err = bpf_prog_query(ifindex, static_cast<bpf_attach_type>(TcxAttachType(direction)), 0,
                           nullptr, ids.data(), &count);
  if (err != 0) {
    return ErrnoStatus(-err, absl::StrCat("querying TCX ", TcDirectionName(direction),
                                          " programs of ifindex ", ifindex));
  }
  ids.resize(count);
  return ids;
}

}  // namespace ebpfcni::datapath
