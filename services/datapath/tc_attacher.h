#pragma once
// How the datapath puts its two programs on an endpoint's host veth. Both
// ways hook the same two points (tc ingress = packets the pod sends, tc
// egress = packets for the pod); they differ in what else can share them.
//
// - TCX links (kernel >= 6.6, the default where available): the programs
//   are bpf_links pinned under <bpf_dir>/links/, independent of qdiscs. A
//   pod's classic tc configuration — the bandwidth plugin's `ingress` qdisc
//   with its redirect to an ifb device, or its tbf root qdisc — coexists with
//   them, and a restarted service swaps programs with BPF_LINK_UPDATE, which
//   is atomic per direction.
// - clsact filters (any kernel with clsact): a filter with our fixed
//   handle/priority on the clsact qdisc. clsact takes the ffff: handle, so a
//   chained plugin that needs an `ingress` qdisc there cannot run after us.
//
// Each attacher also takes the other kind's attachment off an interface it
// attaches to, so switching modes across a restart (or an upgrade from a
// clsact-only version) leaves exactly one copy of our programs on each
// interface, and never none.
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "services/datapath/tc_attachment.h"

namespace ebpfcni::datapath {

enum class TcAttachMode {
  kAuto,    // TCX when the kernel has it, else clsact
  kTcx,
  kClsact,
};

absl::StatusOr<TcAttachMode> ParseTcAttachMode(const std::string& text);
const char* TcAttachModeName(TcAttachMode mode);

// Whether this kernel supports TCX (asks BPF_PROG_QUERY about loopback's
// TCX ingress: old kernels reject the attach type with EINVAL).
bool KernelSupportsTcx();

class TcAttacher {
 public:
  virtual ~TcAttacher() = default;

  // TcAttachMode::kTcx or kClsact: what this attacher does.
  virtual TcAttachMode mode() const = 0;

  // Attaches `prog_fd` in our slot of `direction` on `ifindex`, or swaps it
  // in atomically if something is there already. Returns the program id.
  virtual absl::StatusOr<uint32_t> Attach(int ifindex, TcDirection direction, int prog_fd) = 0;

  // Id of the program in our slot, 0 when there is none.
  virtual absl::StatusOr<uint32_t> Query(int ifindex, TcDirection direction) = 0;

  // Removes our attachment. `interface_is_ours` is false when the ifindex
  // now names some other interface (the kernel reused it): then only what
  // certainly belonged to the gone interface is cleaned up.
  virtual absl::Status Detach(int ifindex, TcDirection direction, bool interface_is_ours) = 0;

  // Drops attachments (and their pins) on every interface not in
  // `ifindexes`: leftovers of endpoints a crash forgot. Called after a
  // restart re-adopted what it knows.
  virtual absl::Status RemoveAllExcept(const std::set<int>& ifindexes) = 0;
};

// Every program on the hook, whichever way attached: the TCX chain (ours
// and anybody else's, in run order) followed by the program of our clsact
// filter slot, if any. For tests and diagnostics: "exactly our program,
// once" is ElementsAre(id).
absl::StatusOr<std::vector<uint32_t>> ProgramsOnHook(int ifindex, TcDirection direction);

// kAuto picks TCX when KernelSupportsTcx(). TCX needs `bpf_dir` (links are
// pinned under <bpf_dir>/links so they outlive the process); with an empty
// bpf_dir kAuto means clsact and kTcx is an error.
absl::StatusOr<std::unique_ptr<TcAttacher>> MakeTcAttacher(TcAttachMode mode,
                                                          const std::string& bpf_dir);

}  // namespace ebpfcni::datapath
