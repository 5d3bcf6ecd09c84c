#pragma once
// Runs the datapath's TC programs on a frame with BPF_PROG_TEST_RUN, as if
// the frame crossed the interface `ifindex` (which must exist in this
// network namespace; 1, loopback, always does).
//
// Trace() sets the trace magic (bpf/lib/trace.h): the run changes nothing
// (no conntrack entry, counter, metric or event) and reports why the
// program decided what it did.
#include <cstdint>
#include <vector>

#include <absl/status/statusor.h>

namespace ebpfcni::datapath {

// What the programs return for a packet they let through: TC_ACT_UNSPEC,
// i.e. TCX_NEXT (bpf/lib/common.h, EBPFCNI_TC_PASS).
inline constexpr int kTcActOk = -1;
inline constexpr int kTcActShot = 2;

struct TraceResult {
  int action = 0;              // kTcActOk / kTcActShot
  uint32_t verdict = 0;        // enum ebpfcni_verdict
  uint32_t reason = 0;         // enum ebpfcni_drop_reason
  uint32_t rule_id = 0;
  uint32_t peer_identity = 0;
  uint32_t endpoint_identity = 0;
};

// One real run: the program's return value (TC action).
absl::StatusOr<int> RunProgram(int prog_fd, uint32_t ifindex, const std::vector<uint8_t>& frame);

// One side-effect-free run with the verdict details.
absl::StatusOr<TraceResult> TraceProgram(int prog_fd, uint32_t ifindex,
                                         const std::vector<uint8_t>& frame);

// `repeat` real runs in the kernel; the kernel-reported mean ns per run.
absl::StatusOr<uint32_t> TimeProgram(int prog_fd, uint32_t ifindex,
                                     const std::vector<uint8_t>& frame, uint32_t repeat);

}  // namespace ebpfcni::datapath
