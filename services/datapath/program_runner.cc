#include "services/datapath/program_runner.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cstring>

#include <absl/strings/str_cat.h>

#include "ebpfcni/datapath_abi.h"

namespace ebpfcni::datapath {
namespace {

struct RunOutput {
  int action = 0;
  uint32_t duration_ns = 0;
  __sk_buff context{};
};

absl::StatusOr<RunOutput> Run(int prog_fd, uint32_t ifindex, const std::vector<uint8_t>& frame,
                              bool trace, uint32_t repeat) {
  RunOutput output;
  __sk_buff context_in{};
  context_in.ifindex = ifindex;
  if (trace) {
    context_in.cb[3] = EBPFCNI_TRACE_MAGIC_0;
    context_in.cb[4] = EBPFCNI_TRACE_MAGIC_1;
  }
  // The kernel writes the (possibly modified) frame back; give it room.
  std::vector<uint8_t> data_out(frame.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_out = data_out.data(), .data_size_in = static_cast<uint32_t>(frame.size()),
              .data_size_out = static_cast<uint32_t>(data_out.size()), .ctx_in = &context_in,
              .ctx_out = &output.context, .ctx_size_in = sizeof(context_in),
              .ctx_size_out = sizeof(output.context), .repeat = static_cast<int>(repeat));
  int err = bpf_prog_test_run_opts(prog_fd, &opts);
  if (err != 0) {
    return absl::InternalError(absl::StrCat("BPF_PROG_TEST_RUN on ifindex ", ifindex, " with a ",
                                            frame.size(), "-byte frame: ", std::strerror(-err)));
  }
  output.action = static_cast<int>(opts.retval);
  output.duration_ns = opts.duration;
  return output;
}

}  // namespace

absl::StatusOr<int> RunProgram(int prog_fd, uint32_t ifindex, const std::vector<uint8_t>& frame) {
  absl::StatusOr<RunOutput> output = Run(prog_fd, ifindex, frame, /*trace=*/false, 1);
  if (!output.ok()) return output.status();
  return output->action;
}

absl::StatusOr<TraceResult> TraceProgram(int prog_fd, uint32_t ifindex,
                                         const std::vector<uint8_t>& frame) {
  absl::StatusOr<RunOutput> output = Run(prog_fd, ifindex, frame, /*trace=*/true, 1);
  if (!output.ok()) return output.status();
  TraceResult result;
  result.action = output->action;
  result.verdict = output->context.cb[0];
  result.reason = output->context.cb[1];
  result.rule_id = output->context.cb[2];
  result.peer_identity = output->context.cb[3];
  result.endpoint_identity = output->context.cb[4];
  return result;
}

absl::StatusOr<uint32_t> TimeProgram(int prog_fd, uint32_t ifindex,
                                     const std::vector<uint8_t>& frame, uint32_t repeat) {
  absl::StatusOr<RunOutput> output = Run(prog_fd, ifindex, frame, /*trace=*/false, repeat);
  if (!output.ok()) return output.status();
  return output->duration_ns;
}

}  // namespace ebpfcni::datapath
