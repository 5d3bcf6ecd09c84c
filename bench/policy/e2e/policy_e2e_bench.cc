// policy-e2e-bench: how long a NetworkPolicy change takes to be enforced by
// the kernel, measured from the outside on a running node.
//
//   policy-e2e-bench latency --manifest_dir=DIR --policy_socket=S --datapath_socket=S
//       --namespace=NS --target_pod=NAME --source_ip=IP --destination_ip=IP [--iterations=200]
//     Each iteration rewrites one NetworkPolicy file in the manifest directory
//     (written under a temporary name next to it, then renamed in: the agent
//     never sees half a file), alternating between a policy that lets the
//     source reach the target on TCP/80 and one that isolates the target
//     without that rule. t0 = just after rename(2). Then, in a tight loop:
//       - kernel: datapath Trace(source -> destination, TCP SYN to 80), which
//         runs a synthetic packet through the endpoints' real BPF programs
//         (BPF_PROG_TEST_RUN); the change is enforced when its verdict flips
//         to the new expectation;
//       - agent: GetStatus until applied_generation == compiled_generation
//         and the compiled generation moved past the one before the change.
//     Prints p50/p90/p99/max of both, as JSON on the last line.
//
//   policy-e2e-bench status --policy_socket=S
//     The agent's GetStatus as JSON (scripts read endpoint_policy_pushes).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/grpc/channel.h"
#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "ebpfcni/policy/v1/policy.grpc.pb.h"

ABSL_FLAG(std::string, manifest_dir, "", "the agent's manifest directory");
ABSL_FLAG(std::string, policy_socket, "/run/ebpf-cni/policy.sock", "policy agent socket");
ABSL_FLAG(std::string, datapath_socket, "/run/ebpf-cni/datapath.sock", "datapath socket");
ABSL_FLAG(std::string, namespace_name, "", "namespace of the target pod and of the measured policy");
ABSL_FLAG(std::string, tmp_dir, "", "where the policy file is written before the rename (same filesystem)");
ABSL_FLAG(std::string, target_label, "bench=target", "key=value label that selects the target pod");
ABSL_FLAG(std::string, source_label, "bench=source", "key=value label of the source pod (same namespace)");
ABSL_FLAG(std::string, source_ip, "", "source pod address");
ABSL_FLAG(std::string, destination_ip, "", "target pod address");
ABSL_FLAG(int, iterations, 200, "policy changes to time");
ABSL_FLAG(int, timeout_ms, 5000, "give up on one change after this long");

namespace {

using Clock = std::chrono::steady_clock;
namespace dp = ebpfcni::datapath::v1;
namespace pol = ebpfcni::policy::v1;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Nearest-rank percentile of sorted samples.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::string Summary(const char* name, std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  return absl::StrFormat("\"%s\": {\"n\": %d, \"p50_ms\": %.2f, \"p90_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f}",
                         name, samples.size(), Percentile(samples, 50), Percentile(samples, 90),
                         Percentile(samples, 99), samples.empty() ? 0.0 : samples.back());
}

bool GetStatus(pol::PolicyService::Stub& stub, pol::GetStatusResponse* out) {
  grpc::ClientContext context;
  ebpfcni::SetDeadline(context, std::chrono::seconds(5));
  grpc::Status status = stub.GetStatus(&context, pol::GetStatusRequest(), out);
  if (!status.ok()) std::cerr << "GetStatus: " << status.error_message() << "\n";
  return status.ok();
}

// "key=value" -> "key: value" (inside a YAML flow map).
std::string LabelYaml(const std::string& label) {
  size_t eq = label.find('=');
  if (eq == std::string::npos) return label + ": \"\"";
  return absl::StrCat(label.substr(0, eq), ": ", label.substr(eq + 1));
}

// The measured policy: always isolates the target for ingress; `allow`
// adds the rule that lets the source in on TCP/80.
std::string PolicyYaml(bool allow) {
  const std::string ns = absl::GetFlag(FLAGS_namespace_name);
  std::string yaml = absl::StrCat(
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bench-e2e, namespace: ", ns,
      "}\nspec:\n  podSelector: {matchLabels: {", LabelYaml(absl::GetFlag(FLAGS_target_label)),
      "}}\n  ingress:\n");
  absl::StrAppend(&yaml, "  - from:\n    - podSelector: {matchLabels: {",
                  LabelYaml(allow ? absl::GetFlag(FLAGS_source_label) : std::string("bench=nobody")),
                  "}}\n    ports:\n    - port: 80\n");
  return yaml;
}

bool WriteAtomically(const std::string& dir, const std::string& name, const std::string& text) {
  // Written outside the watched directory, then renamed in: rename(2) is
  // atomic, so the agent reads either the old file or the whole new one.
  const std::string tmp_dir = absl::GetFlag(FLAGS_tmp_dir).empty() ? dir + "/.." : absl::GetFlag(FLAGS_tmp_dir);
  const std::string tmp = absl::StrCat(tmp_dir, "/.", name, ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.good()) return false;
  }
  return std::rename(tmp.c_str(), absl::StrCat(dir, "/", name).c_str()) == 0;
}

int Latency() {
  auto policy = pol::PolicyService::NewStub(ebpfcni::MakeChannel(absl::GetFlag(FLAGS_policy_socket)));
  auto datapath = dp::DatapathService::NewStub(ebpfcni::MakeChannel(absl::GetFlag(FLAGS_datapath_socket)));
  dp::TraceRequest trace;
  trace.set_source_ip(absl::GetFlag(FLAGS_source_ip));
  trace.set_destination_ip(absl::GetFlag(FLAGS_destination_ip));
  trace.set_protocol(6);
  trace.set_source_port(40000);
  trace.set_destination_port(80);
  auto kernel_allows = [&](bool* allowed) {
    grpc::ClientContext context;
    ebpfcni::SetDeadline(context, std::chrono::seconds(5));
    dp::TraceResponse response;
    grpc::Status status = datapath->Trace(&context, trace, &response);
    if (!status.ok()) {
      std::cerr << "datapath Trace: " << status.error_message() << "\n";
      return false;
    }
    *allowed = response.allowed();
    return true;
  };

  const std::string dir = absl::GetFlag(FLAGS_manifest_dir);
  const auto timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  std::vector<double> kernel_ms, status_ms;
  int timeouts = 0;
  // Start from a known state: the deny variant installed and enforced.
  bool allow = false;
  for (int i = -1; i < absl::GetFlag(FLAGS_iterations); ++i) {
    pol::GetStatusResponse before;
    if (!GetStatus(*policy, &before)) return 1;
    if (!WriteAtomically(dir, "zz-bench-e2e.yaml", PolicyYaml(allow))) {
      std::cerr << "cannot write the policy file in " << dir << "\n";
      return 1;
    }
    const auto t0 = Clock::now();
    std::optional<double> kernel_at, status_at;
    while ((!kernel_at || !status_at) && Clock::now() - t0 < timeout) {
      bool allowed = false;
      if (!kernel_at) {
        if (!kernel_allows(&allowed)) return 1;
        if (allowed == allow) kernel_at = Ms(Clock::now() - t0);
      }
      if (!status_at) {
        pol::GetStatusResponse now;
        if (!GetStatus(*policy, &now)) return 1;
        if (now.compiled_generation() > before.compiled_generation() &&
            now.applied_generation() >= now.compiled_generation())
          status_at = Ms(Clock::now() - t0);
      }
    }
    if (i >= 0) {  // iteration -1 is the warm-up that sets the initial state
      if (kernel_at && status_at) {
        kernel_ms.push_back(*kernel_at);
        status_ms.push_back(*status_at);
      } else {
        ++timeouts;
        std::cerr << "change " << i << " (" << (allow ? "allow" : "deny") << ") not enforced within "
                  << timeout.count() << " ms (kernel " << (kernel_at ? "yes" : "no") << ", status "
                  << (status_at ? "yes" : "no") << ")\n";
      }
    }
    allow = !allow;
  }
  std::cout << "{" << Summary("kernel_enforced", kernel_ms) << ", " << Summary("status_applied", status_ms)
            << ", \"timeouts\": " << timeouts << "}" << std::endl;
  return timeouts == 0 ? 0 : 1;
}

int Status() {
  auto policy = pol::PolicyService::NewStub(ebpfcni::MakeChannel(absl::GetFlag(FLAGS_policy_socket)));
  pol::GetStatusResponse response;
  if (!GetStatus(*policy, &response)) return 1;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(response, &json, options).ok()) return 1;
  std::cout << json << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string mode = args.size() == 2 ? args[1] : "";
  if (mode == "latency") return Latency();
  if (mode == "status") return Status();
  std::cerr << "usage: policy-e2e-bench latency|status [flags] (see --help)\n";
  return 2;
}
