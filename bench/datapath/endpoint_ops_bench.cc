// Per-call latency of the datapath's endpoint operations on the CNI ADD/DEL
// path, in-process (no gRPC): EndpointManager::CreateEndpoint with an
// identity and a small policy (what an ADD with the policy agent sends), and
// DeleteEndpoint. Each endpoint sits on its own veth (created
// before timing starts), so the figures are the datapath's own work: the
// persistent registry and policy copy, the BPF map writes, clsact and the two
// TC filters.
//
// With --policy_batches it also times a policy change of many endpoints:
// one ReplaceEndpointPolicy per endpoint (one RCU grace period each) vs one
// ReplaceEndpointPolicies batch (one grace period for the batch).
//
// Usage: endpoint_ops_bench [--endpoints=200] [--policy_batches]
//                           [--state_dir=/var/tmp/...]
// The state directory should be on the disk the daemon uses (/var/lib), not
// tmpfs, or fsync costs nothing.
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "services/datapath/endpoint_manager.h"

ABSL_FLAG(int, endpoints, 200, "endpoints created then deleted (each on its own veth)");
ABSL_FLAG(std::string, state_dir, "/var/tmp", "parent of the bench's state directory");
ABSL_FLAG(bool, smoke, false, "5 endpoints: proves the tool works (CTest)");
ABSL_FLAG(bool, policy_batches, false,
          "also time replacing the policies of 1, 100 and --endpoints endpoints one by one "
          "(ReplaceEndpointPolicy each) vs in one ReplaceEndpointPolicies batch");

namespace ebpfcni::datapath {
namespace {

// What the bench made, removed at the end and on every failure.
std::vector<std::string> created_interfaces;
std::vector<std::string> created_dirs;

void CleanUp() {
  for (const std::string& name : created_interfaces) {
    std::system(("ip link del " + name + " 2>/dev/null").c_str());
  }
  created_interfaces.clear();
  for (const std::string& dir : created_dirs) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  created_dirs.clear();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "endpoint_ops_bench: %s\n", what.c_str());
  CleanUp();
  std::exit(1);
}

void Run(const std::string& command) {
  if (std::system(command.c_str()) != 0) Die("failed: " + command);
}

struct Percentiles {
  double p50, p90, p99, max, mean;
};

Percentiles Summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))]; };
  double sum = 0;
  for (double v : ms) sum += v;
  return {at(0.5), at(0.9), at(0.99), ms.back(), sum / ms.size()};
}

EndpointPolicy SmallPolicy(uint32_t i) {
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  for (uint32_t r = 0; r < 10; ++r) {
    PolicyRule rule{PolicyDirection::kIngress, 256 + r, 6, static_cast<uint16_t>(80 + r),
                    PolicyAction::kAllow, 1000 + r};
    policy.rules.push_back(rule);
  }
  PolicyRule range{PolicyDirection::kIngress, 256 + i % 50, 17, 30000, PolicyAction::kAllow, 999};
  range.end_port = 32767;
  policy.rules.push_back(range);
  return policy;
}

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// A policy change of the first `size` endpoints, one call per endpoint vs
// one batch, repeated; prints a table row per size. Every repetition
// changes the policies (a new range peer), so each call really swaps maps.
void TimePolicyBatches(EndpointManager& manager, int count) {
  std::vector<int> sizes;
  for (int size : {1, 100, 1000, count}) {
    if (size <= count && (sizes.empty() || size > sizes.back())) sizes.push_back(size);
  }
  uint32_t version = 1000;  // policies differ from every earlier one
  std::printf("\n| endpoints | one by one: total ms (per endpoint) | one batch: p50 ms | "
              "one batch: max ms | runs (one by one / batch) |\n");
  std::printf("| ---: | ---: | ---: | ---: | ---: |\n");
  for (int size : sizes) {
    // One-by-one at 1000 endpoints takes ~15 s a run: fewer runs.
    const int single_runs = size >= 500 ? 1 : 5;
    const int batch_runs = 10;
    std::vector<double> single_ms, batch_ms;
    for (int run = 0; run < single_runs; ++run) {
      ++version;
      auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < size; ++i) {
        absl::StatusOr<PolicySummary> replaced = manager.ReplaceEndpointPolicy(
            {absl::StrCat("bench-", i), "eth0"}, SmallPolicy(version + i));
        if (!replaced.ok()) Die(replaced.status().ToString());
      }
      single_ms.push_back(MsSince(start));
    }
    for (int run = 0; run < batch_runs; ++run) {
      ++version;
      std::vector<EndpointManager::PolicyReplacement> batch;
      for (int i = 0; i < size; ++i) {
        batch.push_back({{absl::StrCat("bench-", i), "eth0"}, SmallPolicy(version + i)});
      }
      auto start = std::chrono::steady_clock::now();
      std::vector<absl::StatusOr<PolicySummary>> results = manager.ReplaceEndpointPolicies(batch);
      batch_ms.push_back(MsSince(start));
      for (const auto& result : results) {
        if (!result.ok()) Die(result.status().ToString());
      }
    }
    Percentiles single = Summarize(single_ms);
    Percentiles batched = Summarize(batch_ms);
    std::printf("| %d | %.1f (%.2f) | %.2f | %.2f | %d / %d |\n", size, single.mean,
                single.mean / size, batched.p50, batched.max, single_runs, batch_runs);
  }
  std::printf("\n");
}

int Main() {
  const int count = absl::GetFlag(FLAGS_smoke) ? 5 : absl::GetFlag(FLAGS_endpoints);
  const std::string tag = absl::StrCat("ebob", getpid() % 100000);
  const std::string state_dir = absl::StrCat(absl::GetFlag(FLAGS_state_dir), "/", tag, "-state");
  const std::string bpf_dir = absl::StrCat("/sys/fs/bpf/", tag);
  spdlog::set_level(spdlog::level::warn);  // the manager logs every endpoint at info
  created_dirs = {state_dir, bpf_dir};

  std::vector<std::string> interfaces;
  for (int i = 0; i < count; ++i) {
    // A veth pair like a pod's, both ends in this namespace (the peer is
    // never used; deleting one end deletes both).
    interfaces.push_back(absl::StrCat(tag, "h", i));
    created_interfaces.push_back(interfaces.back());
    Run(absl::StrCat("ip link add ", interfaces.back(), " type veth peer name ", tag, "p", i,
                     " && ip link set ", interfaces.back(), " up"));
  }
  // Round 1 creates endpoints on fresh ids (the policy map is created and
  // swapped into its slot: an RCU grace period); round 2 after deleting
  // them all, so new endpoints take the freed ids and their spare maps.
  std::vector<double> create_ms[2], delete_ms[2], replace_ms;
  {
    EndpointManagerOptions options;
    options.bpf_dir = bpf_dir;
    options.state_dir = state_dir;
    options.map_host_addresses = false;
    absl::StatusOr<std::unique_ptr<EndpointManager>> manager = EndpointManager::Start(options);
    if (!manager.ok()) Die(manager.status().ToString());
    // Like a daemon that has been up for a few seconds: its background
    // spares are ready (the first `prefill_spares` ADDs use them).
    for (int i = 0; i < 100 && (*manager)->spare_count() < static_cast<size_t>(options.prefill_spares); ++i) {
      usleep(50 * 1000);
    }
    std::printf("spare policy maps ready at start: %zu\n", (*manager)->spare_count());
    for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < count; ++i) {
      EndpointRecord record;
      record.key = {absl::StrCat("bench-", i), "eth0"};
      record.host_ifindex = if_nametoindex(interfaces[i].c_str());
      record.addresses = {absl::StrCat("10.240.", i / 250, ".", i % 250 + 1)};
      record.pod_namespace = "bench";
      record.pod_name = absl::StrCat("pod-", i);
      record.identity = 256 + i % 50;
      auto start = std::chrono::steady_clock::now();
      absl::StatusOr<EndpointStatus> created = (*manager)->CreateEndpoint(record, SmallPolicy(i));
      create_ms[round].push_back(std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - start)
                              .count());
      if (!created.ok()) Die(created.status().ToString());
    }
    // Policy changes of running endpoints (what the policy agent pushes):
    // always an atomic swap of the endpoint's map, once per round 1 endpoint.
    if (round == 0) {
      for (int i = 0; i < count; ++i) {
        EndpointPolicy changed = SmallPolicy(static_cast<uint32_t>(i + 1));
        auto start = std::chrono::steady_clock::now();
        absl::StatusOr<PolicySummary> replaced =
            (*manager)->ReplaceEndpointPolicy({absl::StrCat("bench-", i), "eth0"}, changed);
        replace_ms.push_back(std::chrono::duration<double, std::milli>(
                                 std::chrono::steady_clock::now() - start)
                                 .count());
        if (!replaced.ok()) Die(replaced.status().ToString());
      }
    }
    if (round == 0 && (absl::GetFlag(FLAGS_policy_batches) || absl::GetFlag(FLAGS_smoke))) {
      TimePolicyBatches(**manager, count);
    }
    for (int i = 0; i < count; ++i) {
      auto start = std::chrono::steady_clock::now();
      absl::StatusOr<bool> deleted = (*manager)->DeleteEndpoint({absl::StrCat("bench-", i), "eth0"});
      delete_ms[round].push_back(std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - start)
                              .count());
      if (!deleted.ok()) Die(deleted.status().ToString());
    }
    }
  }
  CleanUp();

  std::printf("| operation | calls | p50 ms | p90 ms | p99 ms | max ms | mean ms |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const auto& [name, samples] :
       {std::pair{"CreateEndpoint, first round (32 prefilled spares, then fresh ids)", &create_ms[0]},
        std::pair{"ReplaceEndpointPolicy (atomic swap)", &replace_ms},
        std::pair{"DeleteEndpoint", &delete_ms[0]},
        std::pair{"CreateEndpoint, reused id with spare map", &create_ms[1]},
        std::pair{"DeleteEndpoint (again)", &delete_ms[1]}}) {
    Percentiles p = Summarize(*samples);
    std::printf("| %s | %zu | %.2f | %.2f | %.2f | %.2f | %.2f |\n", name, samples->size(), p.p50,
                p.p90, p.p99, p.max, p.mean);
  }
  return 0;
}

}  // namespace
}  // namespace ebpfcni::datapath

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ebpfcni::datapath::Main();
}
