#pragma once
// Attaches the datapath's programs as TC (clsact) filters on an interface.
//
// Every filter uses one fixed handle and priority, so attaching again
// replaces our filter in place (BPF_TC_F_REPLACE) instead of adding a
// duplicate, and a restarted service can find and swap what an earlier run
// attached without touching anybody else's filters.
#include <cstdint>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace ebpfcni::datapath {

enum class TcDirection {
  kIngress,  // clsact ingress: packets received by the interface
  kEgress,   // clsact egress: packets sent out of the interface
};

const char* TcDirectionName(TcDirection direction);

// A failed attach/detach call (positive errno) as a status: a missing
// interface is NOT_FOUND, missing privileges PERMISSION_DENIED, anything
// else INTERNAL.
absl::Status TcErrnoStatus(int errno_value, const std::string& what);

inline constexpr uint32_t kTcFilterHandle = 0xeb1;
inline constexpr uint32_t kTcFilterPriority = 0xeb;

// Adds the clsact qdisc to the interface; OK if it is already there.
absl::Status EnsureClsactQdisc(int ifindex);

// Attaches (or atomically replaces) our filter; returns the attached
// program's id.
absl::StatusOr<uint32_t> AttachTcProgram(int ifindex, TcDirection direction, int prog_fd);

// Id of the program in our filter slot, 0 when nothing is attached there
// (no clsact qdisc, or no filter with our handle/priority).
absl::StatusOr<uint32_t> QueryTcProgram(int ifindex, TcDirection direction);

// Removes our filter. OK when it, its qdisc or the interface is gone already.
absl::Status DetachTcProgram(int ifindex, TcDirection direction);

}  // namespace ebpfcni::datapath
