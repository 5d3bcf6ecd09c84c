#include "tools/ctl/ctl_commands.h"

#include <chrono>
#include <iostream>
#include <thread>

#include <absl/flags/flag.h>
#include <absl/strings/ascii.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/match.h>
#include <absl/strings/str_split.h>
#include <absl/time/clock.h>
#include <absl/time/time.h>
#include <google/protobuf/util/json_util.h>

#include "common/grpc/channel.h"
#include "common/net/ip_address.h"
#include "ebpfcni/policy/v1/policy.grpc.pb.h"

ABSL_FLAG(std::string, policy_socket, "unix:/run/ebpf-cni/policy.sock", "The policy agent's gRPC target");
ABSL_FLAG(std::string, socket, "", "Alias of --policy_socket (a socket path or gRPC target); wins when set");
ABSL_FLAG(bool, json, false, "Print the agent's answer as JSON instead of text");
ABSL_FLAG(bool, wait, false, "status: wait until the agent is in sync (or --timeout passes)");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "status --wait: how long to wait");
ABSL_FLAG(int64_t, min_generation, -1,
          "status --wait: also wait until compiled_generation is greater than this (a change made after you "
          "read generation N has been compiled)");
ABSL_FLAG(std::string, from, "", "policy trace: source, NS/POD, POD (namespace default) or an IP");
ABSL_FLAG(std::string, to, "", "policy trace: destination, NS/POD, POD (namespace default) or an IP");
ABSL_FLAG(std::string, protocol, "tcp", "policy trace: tcp, udp, sctp, icmp, icmpv6 or a protocol number");
ABSL_FLAG(int32_t, port, 0, "policy trace: destination port");
ABSL_FLAG(bool, skip_kernel, false, "policy trace: answer from the compiled state only");
ABSL_FLAG(std::string, namespace, "", "policy list: only this namespace");
ABSL_FLAG(int64_t, count, 0, "policy events: stop after this many events (0: no limit)");
ABSL_FLAG(absl::Duration, follow_for, absl::InfiniteDuration(), "policy events: stop after this long");
ABSL_FLAG(std::vector<std::string>, types, {}, "policy events: only these types (drop, verdict)");

namespace ebpfcni::ctl {
namespace {

namespace v1 = ebpfcni::policy::v1;
namespace dp = ebpfcni::datapath::v1;

std::string Target() {
  std::string alias = absl::GetFlag(FLAGS_socket);
  return alias.empty() ? absl::GetFlag(FLAGS_policy_socket) : alias;
}

std::unique_ptr<v1::PolicyService::Stub> Stub() { return v1::PolicyService::NewStub(MakeChannel(Target())); }

int RpcFailed(const std::string& call, const grpc::Status& status) {
  std::cerr << "ebpf-cni-ctl: " << call << " failed: " << status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    std::cerr << " (is ebpf-cni-policy running and listening on " << Target()
              << "? see --policy_socket)";
  }
  std::cerr << "\n";
  return kExitError;
}

void PrintJson(const google::protobuf::Message& message, bool one_line = false) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = !one_line;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  std::cout << out << (one_line || out.empty() || out.back() != '\n' ? "\n" : "");
}

bool NoArgs(const std::vector<std::string>& args, const char* command) {
  if (args.empty()) return true;
  std::cerr << "ebpf-cni-ctl " << command << ": unexpected argument \"" << args[0] << "\"\n";
  return false;
}

std::string DirectionText(dp::PolicyDirection direction) {
  return direction == dp::POLICY_DIRECTION_EGRESS ? "egress" : "ingress";
}

std::string RuleText(const v1::RuleRef& rule) {
  if (rule.policy_namespace().empty()) return absl::StrCat("rule ", rule.rule_id(), ": ", rule.policy_name());
  return absl::StrCat("rule ", rule.rule_id(), ": ", rule.policy_namespace(), "/", rule.policy_name(), " ",
                      DirectionText(rule.direction()), " rule #", rule.rule_index());
}

std::string ProtocolText(uint32_t protocol) {
  switch (protocol) {
    case 1: return "ICMP";
    case 6: return "TCP";
    case 17: return "UDP";
    case 58: return "ICMPv6";
    case 132: return "SCTP";
    default: return absl::StrCat("proto-", protocol);
  }
}

// --- status ---------------------------------------------------------------------------

bool InSync(const v1::GetStatusResponse& status, int64_t min_generation, std::string* why) {
  if (!status.source().synced()) {
    *why = "the cluster-state source has not completed its first sync";
    return false;
  }
  if (min_generation >= 0 && status.compiled_generation() <= static_cast<uint64_t>(min_generation)) {
    *why = absl::StrCat("compiled generation ", status.compiled_generation(), " is not past ", min_generation);
    return false;
  }
  if (status.applied_generation() != status.compiled_generation()) {
    *why = absl::StrCat("generation ", status.compiled_generation(), " compiled, ", status.applied_generation(),
                        " in the kernel");
    return false;
  }
  if (status.endpoints_pending() != 0) {
    *why = absl::StrCat(status.endpoints_pending(), " endpoint(s) failing to take their policy (see the agent log)");
    return false;
  }
  return true;
}

void PrintStatus(const v1::GetStatusResponse& status) {
  if (absl::GetFlag(FLAGS_json)) return PrintJson(status);
  const auto& source = status.source();
  std::cout << "source:      " << source.description() << (source.synced() ? " (synced)" : " (NOT synced)") << "\n"
            << "objects:     " << source.pods() << " pods, " << source.namespaces() << " namespaces, "
            << source.network_policies() << " network policies (" << status.network_policies() << " compiled)\n"
            << "generation:  compiled " << status.compiled_generation() << ", applied " << status.applied_generation()
            << "\n"
            << "endpoints:   " << status.endpoints() << " (" << status.endpoints_pending() << " pending)\n"
            << "identities:  " << status.identities() << "\n"
            << "pushes:      " << status.endpoint_policy_pushes() << " endpoint policies, "
            << status.prefix_identity_changes() << " prefix identities\n";
  for (const auto& error : source.errors()) std::cout << "error:       " << error << "\n";
}

}  // namespace

int StatusCommand(const std::vector<std::string>& args) {
  if (!NoArgs(args, "status")) return kExitUsage;
  auto stub = Stub();
  const bool wait = absl::GetFlag(FLAGS_wait);
  const int64_t min_generation = absl::GetFlag(FLAGS_min_generation);
  const absl::Time deadline = absl::Now() + (wait ? absl::GetFlag(FLAGS_timeout) : absl::ZeroDuration());
  v1::GetStatusResponse status;
  grpc::Status rpc;
  std::string why;
  while (true) {
    grpc::ClientContext context;
    SetDeadline(context, std::chrono::seconds(5));
    status.Clear();
    rpc = stub->GetStatus(&context, v1::GetStatusRequest(), &status);
    // While waiting, an agent that is still starting (UNAVAILABLE) is
    // waited for like one that is still syncing.
    if (rpc.ok() && InSync(status, min_generation, &why)) break;
    if (!rpc.ok() && (!wait || rpc.error_code() != grpc::StatusCode::UNAVAILABLE)) {
      return RpcFailed("GetStatus", rpc);
    }
    if (!wait || absl::Now() >= deadline) {
      if (!rpc.ok()) return RpcFailed("GetStatus", rpc);
      PrintStatus(status);
      std::cerr << "not in sync" << (wait ? absl::StrCat(" after ", absl::FormatDuration(absl::GetFlag(FLAGS_timeout)))
                                          : std::string())
                << ": " << why << "\n";
      return kExitNegative;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  PrintStatus(status);
  return kExitOk;
}

// --- policy list / rule -------------------------------------------------------------------

int PolicyListCommand(const std::vector<std::string>& args) {
  if (!NoArgs(args, "policy list")) return kExitUsage;
  v1::ListPoliciesRequest request;
  request.set_namespace_(absl::GetFlag(FLAGS_namespace));
  v1::ListPoliciesResponse response;
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(30));
  if (auto rpc = Stub()->ListPolicies(&context, request, &response); !rpc.ok()) return RpcFailed("ListPolicies", rpc);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
    return kExitOk;
  }
  if (response.policies().empty()) std::cout << "no NetworkPolicy\n";
  for (const auto& policy : response.policies()) {
    std::vector<std::string> types;
    for (int type : policy.policy_types()) {
      types.push_back(type == dp::POLICY_DIRECTION_EGRESS ? "Egress" : "Ingress");
    }
    std::vector<std::string> endpoints;
    for (const auto& key : policy.selected_endpoints()) {
      endpoints.push_back(absl::StrCat(key.container_id(), "/", key.interface_name()));
    }
    std::cout << policy.namespace_() << "/" << policy.name() << "  types=" << absl::StrJoin(types, ",")
              << "  selects " << endpoints.size() << " local endpoint(s)"
              << (endpoints.empty() ? "" : ": " + absl::StrJoin(endpoints, " ")) << "\n";
    for (const auto& rule : policy.rules()) {
      std::cout << "  " << RuleText(rule.rule()) << "  packets=" << rule.packets() << " bytes=" << rule.bytes()
                << "\n";
    }
  }
  return kExitOk;
}

int RuleCommand(const std::vector<std::string>& args) {
  uint32_t id = 0;
  if (args.size() != 1 || !absl::SimpleAtoi(args[0], &id)) {
    std::cerr << "usage: ebpf-cni-ctl rule ID (a number from a drop event or `policy list`)\n";
    return kExitUsage;
  }
  v1::DescribeRuleRequest request;
  request.set_rule_id(id);
  v1::DescribeRuleResponse response;
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(5));
  if (auto rpc = Stub()->DescribeRule(&context, request, &response); !rpc.ok()) return RpcFailed("DescribeRule", rpc);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
  } else {
    std::cout << RuleText(response.rule()) << "\n";
  }
  return kExitOk;
}

// --- policy trace -------------------------------------------------------------------------

namespace {

bool ParsePeer(const std::string& text, v1::TracePeer* peer) {
  if (text.empty()) return false;
  if (IpAddress::Parse(text).ok()) {
    peer->set_ip(text);
    return true;
  }
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  if (parts.size() == 1) parts.insert(parts.begin(), "default");
  if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) return false;
  peer->mutable_pod()->set_namespace_(parts[0]);
  peer->mutable_pod()->set_name(parts[1]);
  return true;
}

bool ParseProtocol(std::string text, uint32_t* protocol) {
  text = absl::AsciiStrToLower(text);
  if (text == "tcp") *protocol = 6;
  else if (text == "udp") *protocol = 17;
  else if (text == "sctp") *protocol = 132;
  else if (text == "icmp") *protocol = 1;
  else if (text == "icmpv6") *protocol = 58;
  else return absl::SimpleAtoi(text, protocol);
  return true;
}

std::string DecisionText(const v1::DirectionVerdict& verdict) {
  switch (verdict.decision()) {
    case v1::DECISION_ALLOWED_BY_RULE: {
      std::vector<std::string> rules;
      for (const auto& rule : verdict.allowing_rules()) rules.push_back(RuleText(rule));
      return "allowed by " + absl::StrJoin(rules, "; ");
    }
    case v1::DECISION_ALLOWED_NOT_ISOLATED:
      return "allowed (not isolated: no NetworkPolicy selects it this way)";
    case v1::DECISION_DENIED_DEFAULT:
      return "DENIED (isolated by " + absl::StrJoin(verdict.isolating_policies(), ", ") + "; no rule allows it)";
    case v1::DECISION_NOT_ENFORCED_HERE:
      return "not enforced on this node";
    default:
      return "unknown";
  }
}

}  // namespace

int PolicyTraceCommand(const std::vector<std::string>& args) {
  if (!NoArgs(args, "policy trace")) return kExitUsage;
  v1::TracePolicyRequest request;
  uint32_t protocol = 0;
  if (!ParsePeer(absl::GetFlag(FLAGS_from), request.mutable_source()) ||
      !ParsePeer(absl::GetFlag(FLAGS_to), request.mutable_destination())) {
    std::cerr << "usage: ebpf-cni-ctl policy trace --from NS/POD|IP --to NS/POD|IP --protocol tcp|udp|sctp "
                 "--port N\n";
    return kExitUsage;
  }
  if (!ParseProtocol(absl::GetFlag(FLAGS_protocol), &protocol)) {
    std::cerr << "ebpf-cni-ctl policy trace: --protocol must be tcp, udp, sctp, icmp, icmpv6 or a number\n";
    return kExitUsage;
  }
  request.set_protocol(protocol);
  request.set_port(static_cast<uint32_t>(absl::GetFlag(FLAGS_port)));
  request.set_skip_kernel(absl::GetFlag(FLAGS_skip_kernel));
  v1::TracePolicyResponse response;
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(10));
  if (auto rpc = Stub()->TracePolicy(&context, request, &response); !rpc.ok()) return RpcFailed("TracePolicy", rpc);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
  } else {
    std::cout << absl::GetFlag(FLAGS_from) << " (" << response.source_ip() << ", identity "
              << response.source_identity() << ") -> " << absl::GetFlag(FLAGS_to) << " ("
              << response.destination_ip() << ", identity " << response.destination_identity() << ") "
              << ProtocolText(protocol);
    if (protocol == 6 || protocol == 17 || protocol == 132) std::cout << "/" << request.port();
    std::cout << "\n"
              << "  egress of the source:       " << DecisionText(response.egress()) << "\n"
              << "  ingress of the destination: " << DecisionText(response.ingress()) << "\n";
    if (response.kernel_checked()) {
      std::cout << "  kernel (datapath trace):    " << (response.kernel_allowed() ? "allowed" : "dropped")
                << (response.kernel_agrees() ? " (agrees)" : " (DISAGREES with the compiled state)") << "\n";
    } else {
      std::cout << "  kernel (datapath trace):    not checked\n";
    }
    std::cout << (response.allowed() ? "ALLOWED" : "DENIED") << ": " << response.explanation() << "\n";
  }
  return response.allowed() ? kExitOk : kExitNegative;
}

// --- policy verify / events ------------------------------------------------------------------

int PolicyVerifyCommand(const std::vector<std::string>& args) {
  if (!NoArgs(args, "policy verify")) return kExitUsage;
  v1::VerifyDatapathResponse response;
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(60));
  if (auto rpc = Stub()->VerifyDatapath(&context, v1::VerifyDatapathRequest(), &response); !rpc.ok()) {
    return RpcFailed("VerifyDatapath", rpc);
  }
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(response);
  } else {
    for (const auto& mismatch : response.mismatches()) {
      std::cout << mismatch.key().container_id() << "/" << mismatch.key().interface_name() << ":\n";
      for (const auto& difference : mismatch.differences()) std::cout << "  " << difference << "\n";
    }
    std::cout << response.endpoints_checked() << " endpoint(s) checked against compiled generation "
              << response.generation() << ": "
              << (response.mismatches().empty() ? "kernel matches"
                                                : absl::StrCat(response.mismatches_size(), " differ"))
              << "\n";
  }
  return response.mismatches().empty() ? kExitOk : kExitNegative;
}

namespace {

// The agent's explanation of a dropped packet, from the compiled state.
std::string WhyDropped(const dp::Event& event) {
  v1::TracePolicyRequest request;
  request.mutable_source()->set_ip(event.source_ip());
  request.mutable_destination()->set_ip(event.destination_ip());
  request.set_protocol(event.protocol());
  request.set_port(event.destination_port());
  request.set_skip_kernel(true);
  v1::TracePolicyResponse response;
  grpc::ClientContext context;
  SetDeadline(context, std::chrono::seconds(5));
  grpc::Status status = Stub()->TracePolicy(&context, request, &response);
  if (!status.ok()) return "no rule allows it (" + status.error_message() + ")";
  // "denied: x/b is isolated ..." reads twice after "default deny:".
  std::string explanation = response.explanation();
  if (absl::StartsWith(explanation, "denied: ")) explanation.erase(0, 8);
  return explanation;
}

}  // namespace

int PolicyEventsCommand(const std::vector<std::string>& args) {
  if (!NoArgs(args, "policy events")) return kExitUsage;
  v1::StreamPolicyEventsRequest request;
  for (const auto& type : absl::GetFlag(FLAGS_types)) {
    if (type == "drop") {
      request.mutable_filter()->add_types(dp::EVENT_TYPE_DROP);
    } else if (type == "verdict") {
      request.mutable_filter()->add_types(dp::EVENT_TYPE_POLICY_VERDICT);
    } else {
      std::cerr << "ebpf-cni-ctl policy events: --types takes drop and/or verdict, not \"" << type << "\"\n";
      return kExitUsage;
    }
  }
  grpc::ClientContext context;
  if (absl::GetFlag(FLAGS_follow_for) != absl::InfiniteDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_follow_for)));
  }
  auto reader = Stub()->StreamPolicyEvents(&context, request);
  const int64_t limit = absl::GetFlag(FLAGS_count);
  int64_t seen = 0;
  v1::StreamPolicyEventsResponse response;
  while (reader->Read(&response)) {
    const auto& event = response.event();
    if (absl::GetFlag(FLAGS_json)) {
      PrintJson(event, /*one_line=*/true);
    } else {
      const auto& e = event.event();
      auto side = [](const v1::PodRef& pod, const std::string& ip, uint32_t port, uint32_t identity) {
        std::string name = pod.name().empty() ? ip : absl::StrCat(pod.namespace_(), "/", pod.name(), " ", ip);
        return absl::StrCat(name, ":", port, " (id ", identity, ")");
      };
      std::cout << (e.type() == dp::EVENT_TYPE_DROP ? "DROP    " : "VERDICT ")
                << side(event.source_pod(), e.source_ip(), e.source_port(), e.source_identity()) << " -> "
                << side(event.destination_pod(), e.destination_ip(), e.destination_port(), e.destination_identity())
                << " " << ProtocolText(e.protocol());
      if (e.type() == dp::EVENT_TYPE_DROP) std::cout << " " << dp::DropReason_Name(e.reason());
      if (event.has_rule()) {
        std::cout << "  " << RuleText(event.rule()) << "\n";
      } else if (e.type() == dp::EVENT_TYPE_DROP) {
        // A default deny carries no rule id; the policies that isolate the
        // pod are what a person wants to see, so ask the agent (as of now).
        std::cout << "  default deny: " << WhyDropped(e) << "\n";
      } else {
        std::cout << "  not isolated\n";
      }
    }
    std::cout.flush();
    if (limit > 0 && ++seen >= limit) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (limit > 0 && seen >= limit) return kExitOk;
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) return kExitOk;  // --follow_for elapsed
  if (!status.ok()) return RpcFailed("StreamPolicyEvents", status);
  return kExitOk;
}

}  // namespace ebpfcni::ctl
