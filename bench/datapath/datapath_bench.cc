// ns per packet of the TC programs, as the kernel reports it for
// BPF_PROG_TEST_RUN (the mean over `--repeat` runs of one frame, so only the
// program's own time is counted), for each verdict path and for growing
// policy and ipcache sizes:
//
//   not an endpoint   an interface without endpoint entry (programs are only
//                     attached to endpoints, so this is a transient case):
//                     parse, conntrack misses, endpoint lookup miss
//   no policy, CT hit endpoint without policy, packet of a tracked flow
//   CT hit            isolated endpoint, packet of an allowed tracked flow
//                     (IPv4, and IPv6 with its longer conntrack key)
//   new flow allowed  the SYN of a new connection: conntrack lookup, endpoint,
//                     ipcache, policy lookups, per-rule counter, conntrack
//                     insert. Every run is a new flow because the objects are
//                     loaded with conntrack lifetimes of 0: each run finds the
//                     previous run's (expired) entry and replaces it with a
//                     new LRU element (bpf_map_update_elem), as an insert does
//   denied            isolated, no rule matches: ipcache, the policy lookups
//                     of the key shapes in use, metrics and a (rate-limited)
//                     drop event
//
//   empty program     a TC program that only returns (made here from two
//                     instructions): what BPF_PROG_TEST_RUN itself costs on
//                     this machine at this moment, the floor of every row
//
// "hot keys": the same frame `--repeat` times, so every map entry it touches
// stays in the CPU caches. "rotating keys": --rotating_runs single runs, each
// with a different flow (source port) and, for denies, a different peer
// address and identity, spread over the whole table; each single run also
// pays the kernel's per-call timer overhead, which the "not an endpoint" row
// of the same column shows.
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_objects.h"
#include "services/datapath/ipcache_map.h"
#include "services/datapath/packet_builder.h"
#include "services/datapath/policy_map.h"
#include "services/datapath/program_runner.h"

ABSL_FLAG(uint32_t, repeat, 1000000, "BPF_PROG_TEST_RUN repetitions per hot measurement");
ABSL_FLAG(int, rotating_runs, 20000, "single runs, each on a different key, per rotating measurement");
ABSL_FLAG(bool, smoke, false, "tiny sizes and repeats: proves the tool works (CTest)");
ABSL_FLAG(int, new_flow_only, 0,
          "instead of the table: this many hot timings of the new-flow row (10 entries) in a row, "
          "then the empty program's; for comparing two builds of the new-flow path, whose table "
          "cell moves by tens of ns from run to run on a shared VM (take the minimum of several)");

namespace ebpfcni::datapath {
namespace {

constexpr uint32_t kIfindex = 1;  // loopback: always there for test runs
constexpr uint32_t kEndpointId = 7;
constexpr uint32_t kPodIdentity = 1000;
constexpr uint32_t kPeerIdentity = 2000;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "datapath_bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> value) {
  if (!value.ok()) Die(value.status().ToString());
  return *std::move(value);
}

void Check(const absl::Status& status) {
  if (!status.ok()) Die(status.ToString());
}

std::unique_ptr<BpfObjects> LoadObjects(bool every_packet_is_new) {
  BpfLoadOptions options;
  // Every entry of the biggest policy (100 000) counted, as a node sized
  // for it would be.
  options.policy_counter_slots = 1u << 17;
  if (every_packet_is_new) {
    options.conntrack.tcp_syn_ns = 0;
    options.conntrack.tcp_established_ns = 0;
    options.conntrack.other_ns = 0;
  }
  return Check(BpfObjects::Load(options));
}

// `entries` policy entries for `entries` other peers, plus the one that
// allows the benchmark's peer; `prefixes` ipcache entries (the pod, the
// peer, and /32s and /24s of others).
void Populate(BpfObjects& bpf, uint32_t entries, uint32_t prefixes) {
  Check(bpf.SetEndpointForIfindex(kIfindex, kEndpointId, kPodIdentity));
  IpCacheMap ipcache(bpf);
  Check(ipcache.Upsert(IpPrefix(Ip("10.0.0.1"), 32), kPodIdentity));
  Check(ipcache.Upsert(IpPrefix(Ip("10.0.0.2"), 32), kPeerIdentity));
  Check(ipcache.Upsert(IpPrefix(Ip("fd00::1"), 128), kPodIdentity));
  Check(ipcache.Upsert(IpPrefix(Ip("fd00::2"), 128), kPeerIdentity));
  for (uint32_t i = 0; i + 2 < prefixes; ++i) {
    uint8_t bytes[4] = {11, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                        static_cast<uint8_t>(i)};
    Check(ipcache.Upsert(IpPrefix(IpAddress::FromV4Bytes(bytes), i % 4 == 0 ? 24 : 32),
                         3000 + i % 60000));
  }
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.egress_isolated = true;
  policy.rules.push_back(PolicyRule{PolicyDirection::kIngress, kPeerIdentity, kProtoTcp, 80,
                                    PolicyAction::kAllow, 1});
  for (uint32_t i = 1; i < entries; ++i) {
    policy.rules.push_back(PolicyRule{PolicyDirection::kIngress, 3000 + i, kProtoTcp,
                                      static_cast<uint16_t>(1 + i % 60000), PolicyAction::kAllow,
                                      1 + i});
  }
  PolicyMap policy_map(bpf);
  Check(policy_map.Replace(kEndpointId, policy));
}

double Hot(int fd, uint32_t ifindex, const std::vector<uint8_t>& frame, uint32_t repeat) {
  return Check(TimeProgram(fd, ifindex, frame, repeat));
}

// Mean of single runs over `frames` (in order).
double Rotating(int fd, uint32_t ifindex, const std::vector<std::vector<uint8_t>>& frames) {
  double total = 0;
  for (const std::vector<uint8_t>& frame : frames) total += Check(TimeProgram(fd, ifindex, frame, 1));
  return total / static_cast<double>(frames.size());
}

// The allowed flow from the peer with `runs` different source ports.
std::vector<std::vector<uint8_t>> AllowedFlows(int runs, uint8_t flags, bool ipv6 = false) {
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < runs; ++i) {
    frames.push_back(PacketBuilder::Tcp(Ip(ipv6 ? "fd00::2" : "10.0.0.2"),
                                        Ip(ipv6 ? "fd00::1" : "10.0.0.1"),
                                        static_cast<uint16_t>(1024 + i % 60000), 80, flags)
                         .Build());
  }
  return frames;
}

// Denied packets from `runs` different peers of the ipcache (11.x.y.z).
std::vector<std::vector<uint8_t>> DeniedFromManyPeers(int runs, uint32_t prefixes) {
  std::vector<std::vector<uint8_t>> frames;
  uint32_t peers = prefixes > 2 ? prefixes - 2 : 1;
  for (int i = 0; i < runs; ++i) {
    uint32_t n = static_cast<uint32_t>(i) % peers;
    uint8_t bytes[4] = {11, static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8),
                        static_cast<uint8_t>(n)};
    frames.push_back(
        PacketBuilder::Tcp(IpAddress::FromV4Bytes(bytes), Ip("10.0.0.1"), 40000, 81).Build());
  }
  return frames;
}

// A TC program that returns TC_ACT_UNSPEC at once.
int LoadEmptyProgram() {
  const bpf_insn instructions[] = {
      {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .src_reg = 0, .off = 0, .imm = -1},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
  };
  int fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "bench_empty", "GPL", instructions,
                         sizeof(instructions) / sizeof(instructions[0]), nullptr);
  if (fd < 0) Die("loading the empty reference program");
  return fd;
}

struct Row {
  std::string path;
  uint32_t entries;
  double hot;
  double rotating;
};

}  // namespace
}  // namespace ebpfcni::datapath

int main(int argc, char** argv) {
  using namespace ebpfcni::datapath;
  absl::ParseCommandLine(argc, argv);
  bool smoke = absl::GetFlag(FLAGS_smoke);
  uint32_t repeat = smoke ? 1000 : absl::GetFlag(FLAGS_repeat);
  int runs = smoke ? 100 : absl::GetFlag(FLAGS_rotating_runs);
  std::vector<uint32_t> sizes = smoke ? std::vector<uint32_t>{10, 100}
                                      : std::vector<uint32_t>{10, 1000, 100000};

  const std::vector<uint8_t> allowed =
      PacketBuilder::Tcp(Ip("10.0.0.2"), Ip("10.0.0.1"), 40000, 80, kTcpAck).Build();
  const std::vector<uint8_t> allowed6 =
      PacketBuilder::Tcp(Ip("fd00::2"), Ip("fd00::1"), 40000, 80, kTcpAck).Build();
  const std::vector<uint8_t> new_connection =
      PacketBuilder::Tcp(Ip("10.0.0.2"), Ip("10.0.0.1"), 40000, 80, kTcpSyn).Build();
  const std::vector<uint8_t> denied =
      PacketBuilder::Tcp(Ip("10.0.0.2"), Ip("10.0.0.1"), 40000, 81, kTcpSyn).Build();

  if (int times = absl::GetFlag(FLAGS_new_flow_only); times > 0) {
    std::unique_ptr<BpfObjects> fresh = LoadObjects(/*every_packet_is_new=*/true);
    Populate(*fresh, 10, 10);
    std::printf("allowed, new flow (10 entries), hot ns/pkt:");
    for (int i = 0; i < times; ++i) {
      std::printf(" %.0f", Hot(fresh->to_container_fd(), kIfindex, new_connection, repeat));
    }
    int empty = LoadEmptyProgram();
    std::printf("\nempty program, hot ns/pkt: %.0f\n", Hot(empty, kIfindex, allowed, repeat));
    close(empty);
    return 0;
  }

  std::vector<Row> rows;
  {
    int empty = LoadEmptyProgram();
    rows.push_back({"empty program (reference)", 0, Hot(empty, kIfindex, allowed, repeat),
                    Rotating(empty, kIfindex, std::vector<std::vector<uint8_t>>(runs, allowed))});
    close(empty);
  }
  for (uint32_t size : sizes) {
    std::unique_ptr<BpfObjects> tracked = LoadObjects(/*every_packet_is_new=*/false);
    Populate(*tracked, size, size);
    int to_pod = tracked->to_container_fd();
    // Not an endpoint: the frame on an ifindex with no endpoint entry.
    Check(tracked->RemoveIfindex(kIfindex, kEndpointId));
    rows.push_back({"not an endpoint", size, Hot(to_pod, kIfindex, allowed, repeat),
                    Rotating(to_pod, kIfindex, std::vector<std::vector<uint8_t>>(runs, allowed))});
    Check(tracked->SetEndpointForIfindex(kIfindex, kEndpointId, kPodIdentity));
    // Conntrack hits on an isolated endpoint: a first pass creates the
    // entries (the SYNs), the measured pass is the flows' next packets.
    Check(RunProgram(to_pod, kIfindex, allowed));
    std::vector<std::vector<uint8_t>> syns = AllowedFlows(runs, kTcpSyn);
    for (const std::vector<uint8_t>& syn : syns) Check(RunProgram(to_pod, kIfindex, syn));
    std::vector<std::vector<uint8_t>> acks = AllowedFlows(runs, kTcpAck);
    rows.push_back({"allowed, conntrack hit", size, Hot(to_pod, kIfindex, allowed, repeat),
                    Rotating(to_pod, kIfindex, acks)});
    Check(RunProgram(to_pod, kIfindex, allowed6));
    for (const std::vector<uint8_t>& syn : AllowedFlows(runs, kTcpSyn, /*ipv6=*/true)) {
      Check(RunProgram(to_pod, kIfindex, syn));
    }
    rows.push_back({"allowed, conntrack hit, IPv6", size, Hot(to_pod, kIfindex, allowed6, repeat),
                    Rotating(to_pod, kIfindex, AllowedFlows(runs, kTcpAck, /*ipv6=*/true))});
    rows.push_back({"denied (default deny)", size, Hot(to_pod, kIfindex, denied, repeat),
                    Rotating(to_pod, kIfindex, DeniedFromManyPeers(runs, size))});
    // No policy at all: established flows of an endpoint nobody isolates.
    Check(PolicyMap(*tracked).Clear(kEndpointId));
    rows.push_back({"no policy, conntrack hit", size, Hot(to_pod, kIfindex, allowed, repeat),
                    Rotating(to_pod, kIfindex, acks)});

    std::unique_ptr<BpfObjects> fresh = LoadObjects(/*every_packet_is_new=*/true);
    Populate(*fresh, size, size);
    rows.push_back({"allowed, new flow", size,
                    Hot(fresh->to_container_fd(), kIfindex, new_connection, repeat),
                    Rotating(fresh->to_container_fd(), kIfindex, syns)});
  }

  std::printf("| path | policy entries / ipcache prefixes | hot keys ns/pkt | rotating keys ns/pkt |\n");
  std::printf("| --- | ---: | ---: | ---: |\n");
  for (const Row& row : rows) {
    std::printf("| %s | %u | %.0f | %.0f |\n", row.path.c_str(), row.entries, row.hot, row.rotating);
  }
  return 0;
}
