// ebpf-cni-ctl: ask the node's policy agent what it knows.
//
//   ebpf-cni-ctl status [--wait [--timeout=10s] [--min_generation=N]]
//   ebpf-cni-ctl policy list [--namespace=NS]
//   ebpf-cni-ctl policy trace --from NS/POD|IP --to NS/POD|IP --protocol tcp|udp|sctp --port N
//   ebpf-cni-ctl policy verify
//   ebpf-cni-ctl policy events [--count=N] [--follow_for=30s] [--types=drop,verdict]
//   ebpf-cni-ctl rule ID
// Every command takes --policy_socket (default unix:/run/ebpf-cni/policy.sock)
// and --json (print the agent's answer as JSON).
#include <iostream>
#include <string>
#include <vector>

#include <absl/flags/parse.h>
#include <absl/flags/usage.h>

#include "tools/ctl/ctl_commands.h"

namespace {

constexpr char kUsage[] =
    "ebpf-cni-ctl: ask the node's policy agent (ebpf-cni-policy)\n"
    "  status [--wait [--timeout=10s] [--min_generation=N]]   sync state; exit 0 when in sync\n"
    "  policy list [--namespace=NS]                           NetworkPolicies, selected endpoints, rule counters\n"
    "  policy trace --from NS/POD|IP --to NS/POD|IP --protocol tcp|udp|sctp --port N\n"
    "                                                         would it pass? exit 0 allowed, 1 denied\n"
    "  policy verify                                          kernel vs compiled state; exit 1 on mismatch\n"
    "  policy events [--count=N] [--follow_for=D] [--types=drop,verdict]   drop/verdict events\n"
    "  rule ID                                                what a rule id stands for\n"
    "common flags: --policy_socket=unix:/run/ebpf-cni/policy.sock --json";

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  using namespace ebpfcni::ctl;
  auto usage = [] {
    std::cerr << kUsage << "\n";
    return kExitUsage;
  };
  if (args.empty()) return usage();
  const std::string command = args[0];
  if (command == "status") return StatusCommand({args.begin() + 1, args.end()});
  if (command == "rule") return RuleCommand({args.begin() + 1, args.end()});
  if (command == "policy" && args.size() >= 2) {
    const std::string sub = args[1];
    std::vector<std::string> rest(args.begin() + 2, args.end());
    if (sub == "list") return PolicyListCommand(rest);
    if (sub == "trace") return PolicyTraceCommand(rest);
    if (sub == "verify") return PolicyVerifyCommand(rest);
    if (sub == "events") return PolicyEventsCommand(rest);
  }
  std::cerr << "ebpf-cni-ctl: unknown command \"";
  for (size_t i = 0; i < args.size() && i < 2; ++i) std::cerr << (i ? " " : "") << args[i];
  std::cerr << "\"\n";
  return usage();
}
