#include "services/datapath/tc_attachment.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include <absl/strings/str_cat.h>

namespace ebpfcni::datapath {
namespace {

bpf_tc_attach_point AttachPoint(TcDirection direction) {
  return direction == TcDirection::kIngress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}

// libbpf returns -errno; these mean "no such interface / qdisc / filter".
bool IsGoneError(int err) {
  return err == -ENOENT || err == -ENODEV || err == -EINVAL;
}

}  // namespace

absl::Status TcErrnoStatus(int errno_value, const std::string& what) {
  std::string message = absl::StrCat(what, ": ", std::strerror(errno_value));
  switch (errno_value) {
    case ENODEV:
    case ENOENT:
      return absl::NotFoundError(message);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

const char* TcDirectionName(TcDirection direction) {
  return direction == TcDirection::kIngress ? "ingress" : "egress";
}

absl::Status EnsureClsactQdisc(int ifindex) {
  // Both attach points together ask libbpf for the clsact qdisc itself.
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_create(&hook);
  if (err == 0 || err == -EEXIST) return absl::OkStatus();
  return TcErrnoStatus(-err, absl::StrCat("creating clsact qdisc on ifindex ", ifindex));
}

absl::StatusOr<uint32_t> AttachTcProgram(int ifindex, TcDirection direction, int prog_fd) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = AttachPoint(direction));
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE,
              .handle = kTcFilterHandle, .priority = kTcFilterPriority);
  int err = bpf_tc_attach(&hook, &opts);
  if (err != 0) {
    return TcErrnoStatus(-err, absl::StrCat("attaching TC ", TcDirectionName(direction),
                                         " program on ifindex ", ifindex));
  }
  return opts.prog_id;
}

absl::StatusOr<uint32_t> QueryTcProgram(int ifindex, TcDirection direction) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = AttachPoint(direction));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcFilterHandle, .priority = kTcFilterPriority);
  int err = bpf_tc_query(&hook, &opts);
  if (err == 0) return opts.prog_id;
  if (err == -ENOENT || err == -EINVAL) return 0u;  // no qdisc or no filter
  return TcErrnoStatus(-err, absl::StrCat("querying TC ", TcDirectionName(direction),
                                       " filter on ifindex ", ifindex));
}

absl::Status DetachTcProgram(int ifindex, TcDirection direction) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = AttachPoint(direction));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcFilterHandle, .priority = kTcFilterPriority);
  int err = bpf_tc_detach(&hook, &opts);
  if (err == 0 || IsGoneError(err)) return absl::OkStatus();
  return TcErrnoStatus(-err, absl::StrCat("detaching TC ", TcDirectionName(direction),
                                       " program from ifindex ", ifindex));
}

}  // namespace ebpfcni::datapath
