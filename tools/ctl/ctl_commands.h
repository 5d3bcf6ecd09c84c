#pragma once
// The subcommands of ebpf-cni-ctl. Each returns the process exit code:
//   0  success / allowed / in sync
//   1  a negative answer: denied, mismatches, not in sync within --timeout
//   2  usage error
//   3  the policy agent could not answer (unreachable, or it returned an error)
#include <string>
#include <vector>

namespace ebpfcni::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitNegative = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitError = 3;

int StatusCommand(const std::vector<std::string>& args);
int PolicyListCommand(const std::vector<std::string>& args);
int PolicyTraceCommand(const std::vector<std::string>& args);
int PolicyVerifyCommand(const std::vector<std::string>& args);
int PolicyEventsCommand(const std::vector<std::string>& args);
int RuleCommand(const std::vector<std::string>& args);

}  // namespace ebpfcni::ctl
