// tput-policy-loader: puts a large policy on one endpoint through the
// datapath service's ReplaceEndpointPolicy, the way the policy agent would,
// so the throughput bench measures our programs with a realistic rule count.
//
//   tput-policy-loader --datapath=/run/.../datapath.sock --container_id=ID
//       --direction=ingress --allow_peer=IDENTITY --ports=tcp/5201,udp/5201
//       [--other_entries=10000] [--interface=eth0]
//   tput-policy-loader --datapath=... --container_id=ID --clear
//
// The endpoint becomes isolated in `direction`; for each of --ports one rule
// allows --allow_peer (the pod on the other end), and --other_entries more
// rules allow identities nobody has (1000000 + i) on the same ports — so the
// map holds the full count but only the peer's entries ever match, like the
// non-matching iptables rules of the comparison. Prints the resulting
// PolicySummary as JSON.
#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "common/grpc/channel.h"
#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"

ABSL_FLAG(std::string, datapath, "/run/ebpf-cni/datapath.sock", "datapath service target");
ABSL_FLAG(std::string, container_id, "", "the endpoint's container id (CNI_CONTAINERID)");
ABSL_FLAG(std::string, interface, "eth0", "the endpoint's interface in the pod (CNI_IFNAME)");
ABSL_FLAG(std::string, direction, "ingress", "ingress (traffic to the pod) or egress");
ABSL_FLAG(uint32_t, allow_peer, 0, "identity of the peer pod whose traffic is allowed");
ABSL_FLAG(std::string, ports, "tcp/5201",
          "comma-separated PROTO/PORT list (proto tcp or udp) the peer is allowed on");
ABSL_FLAG(int, other_entries, 10000, "non-matching entries added besides the peer's");
ABSL_FLAG(bool, clear, false, "remove the endpoint's policy instead");

namespace {

namespace dp = ebpfcni::datapath::v1;

// First identity of the non-matching entries: far above anything the
// identity service hands out in a bench's lifetime.
constexpr uint32_t kUnusedIdentityBase = 1000000;

bool ParsePorts(const std::string& text, std::vector<std::pair<uint32_t, uint32_t>>* out) {
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(item, '/');
    uint32_t port = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port) || port == 0 || port > 65535) {
      return false;
    }
    if (parts[0] == "tcp") {
      out->emplace_back(6, port);
    } else if (parts[0] == "udp") {
      out->emplace_back(17, port);
    } else {
      return false;
    }
  }
  return !out->empty();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string container_id = absl::GetFlag(FLAGS_container_id);
  const std::string direction_name = absl::GetFlag(FLAGS_direction);
  std::vector<std::pair<uint32_t, uint32_t>> ports;
  if (container_id.empty() || (direction_name != "ingress" && direction_name != "egress") ||
      !ParsePorts(absl::GetFlag(FLAGS_ports), &ports) || absl::GetFlag(FLAGS_other_entries) < 0 ||
      (!absl::GetFlag(FLAGS_clear) && absl::GetFlag(FLAGS_allow_peer) == 0)) {
    std::cerr << "usage: tput-policy-loader --container_id=ID --direction=ingress|egress "
                 "--allow_peer=IDENTITY (non-zero) --ports=tcp/N,udp/M [--other_entries=N] [--clear]\n";
    return 2;
  }
  const dp::PolicyDirection direction = direction_name == "ingress"
                                            ? dp::POLICY_DIRECTION_INGRESS
                                            : dp::POLICY_DIRECTION_EGRESS;

  dp::ReplaceEndpointPolicyRequest request;
  request.mutable_key()->set_container_id(container_id);
  request.mutable_key()->set_interface_name(absl::GetFlag(FLAGS_interface));
  if (!absl::GetFlag(FLAGS_clear)) {
    dp::EndpointPolicy* policy = request.mutable_policy();
    policy->set_ingress_isolated(direction == dp::POLICY_DIRECTION_INGRESS);
    policy->set_egress_isolated(direction == dp::POLICY_DIRECTION_EGRESS);
    uint32_t rule_id = 1;
    auto add_rule = [&](uint32_t peer, std::pair<uint32_t, uint32_t> port) {
      dp::PolicyRule* rule = policy->add_rules();
      rule->set_direction(direction);
      rule->set_peer_identity(peer);
      rule->set_protocol(port.first);
      rule->set_port(port.second);
      rule->set_action(dp::POLICY_ACTION_ALLOW);
      rule->set_rule_id(rule_id++);
    };
    for (const auto& port : ports) add_rule(absl::GetFlag(FLAGS_allow_peer), port);
    const int others = absl::GetFlag(FLAGS_other_entries);
    for (int i = 0; i < others; ++i) {
      add_rule(kUnusedIdentityBase + static_cast<uint32_t>(i), ports[static_cast<size_t>(i) % ports.size()]);
    }
  }

  std::unique_ptr<dp::DatapathService::Stub> stub =
      dp::DatapathService::NewStub(ebpfcni::MakeChannel(absl::GetFlag(FLAGS_datapath)));
  grpc::ClientContext context;
  // 10k+ entries are written one map update each; allow for a loaded machine.
  ebpfcni::SetDeadline(context, std::chrono::seconds(60));
  dp::ReplaceEndpointPolicyResponse response;
  grpc::Status status = stub->ReplaceEndpointPolicy(&context, request, &response);
  if (!status.ok()) {
    std::cerr << "ReplaceEndpointPolicy(" << container_id << ") failed: code "
              << static_cast<int>(status.error_code()) << ": " << status.error_message() << "\n";
    return 1;
  }
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(response, &json, options).ok()) return 1;
  std::cout << json << "\n";
  return 0;
}
