// Identity service latency and throughput, measured through real processes:
// N ebpf-cni-identity replicas over a real etcd (or one over the embedded
// SQLite store), clients balancing over them with MakeBalancedChannel.
//
//   identity_bench --store=etcd --replicas=3 --allocations=3000 --lookups=30000 --clients=8
//
// Reports p50/p99/max latency and throughput for first allocations (a new
// label set each call: the etcd Txn path), lookups (served from each
// replica's local cache), node heartbeats and ipcache upserts, and how long
// each new identity takes to reach a WatchIdentities stream on the last
// replica (counted from the allocating call's return; with several
// replicas most allocations are served by another one).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/strings/str_cat.h>
#include <grpcpp/grpcpp.h>

#include "common/grpc/channel.h"
#include "ebpfcni/identity/v1/identity.grpc.pb.h"
#include "services/identity/etcd/testing/etcd_test_server.h"

ABSL_FLAG(std::string, store, "etcd", "sqlite or etcd");
ABSL_FLAG(int, replicas, 1, "identity service processes (etcd only; sqlite is always 1)");
ABSL_FLAG(int, allocations, 2000, "first allocations (distinct label sets)");
ABSL_FLAG(int, lookups, 20000, "lookups of allocated label sets");
ABSL_FLAG(int, clients, 8, "concurrent client threads");
ABSL_FLAG(int, heartbeats, 2000, "NodeHeartbeat calls (one node: a lease keep-alive each on etcd)");
ABSL_FLAG(int, ipcache, 2000, "UpsertIpCacheEntry calls (distinct /32s)");
ABSL_FLAG(std::string, replica_log_level, "warn", "--log_level of the replicas");
ABSL_FLAG(bool, keep_logs, false, "keep the replicas' logs (the temp dir) for inspection");

namespace {

namespace v1 = ebpfcni::identity::v1;
using Clock = std::chrono::steady_clock;
using ebpfcni::identity::testsupport::ChildProcess;
using ebpfcni::identity::testsupport::EtcdTestServer;

void FillLabels(int set, google::protobuf::RepeatedPtrField<v1::Label>* labels) {
  auto* ns = labels->Add();
  ns->set_key("io.kubernetes.pod.namespace");
  ns->set_value("bench");
  auto* app = labels->Add();
  app->set_key("app");
  app->set_value(absl::StrCat("workload-", set));
}

struct Result {
  std::vector<double> latencies_us;
  double seconds = 0;
  int errors = 0;
};

// Runs `count` calls of `call(i)` from `clients` threads.
template <typename Call>
Result Run(int count, int clients, Call call) {
  Result result;
  std::vector<std::vector<double>> per_thread(clients);
  std::atomic<int> next{0}, errors{0};
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int i = next++; i < count; i = next++) {
        auto begin = Clock::now();
        bool ok = call(i);
        per_thread[c].push_back(std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
        if (!ok) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& v : per_thread) result.latencies_us.insert(result.latencies_us.end(), v.begin(), v.end());
  std::sort(result.latencies_us.begin(), result.latencies_us.end());
  result.errors = errors;
  return result;
}

void Report(const char* what, const Result& r, bool with_throughput = true) {
  auto at = [&](double q) {
    if (r.latencies_us.empty()) return 0.0;
    return r.latencies_us[std::min(r.latencies_us.size() - 1, static_cast<size_t>(q * r.latencies_us.size()))];
  };
  std::printf("%-17s n=%zu errors=%d p50=%.0fus p99=%.0fus max=%.0fus", what, r.latencies_us.size(), r.errors,
              at(0.50), at(0.99), r.latencies_us.empty() ? 0 : r.latencies_us.back());
  if (with_throughput) std::printf(" throughput=%.0f/s", r.latencies_us.size() / r.seconds);
  std::printf("\n");
}

bool WaitServing(const std::string& socket) {
  auto stub = v1::IdentityService::NewStub(ebpfcni::MakeChannel(socket));
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    grpc::ClientContext context;
    ebpfcni::SetDeadline(context, std::chrono::milliseconds(500));
    v1::ListIdentitiesResponse response;
    if (stub->ListIdentities(&context, {}, &response).ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string store = absl::GetFlag(FLAGS_store);
  const int replicas = store == "etcd" ? std::max(1, absl::GetFlag(FLAGS_replicas)) : 1;
  const int clients = std::max(1, absl::GetFlag(FLAGS_clients));
  auto dir = std::filesystem::temp_directory_path() / absl::StrCat("ebpfcni-identity-bench-", getpid());
  std::filesystem::create_directories(dir);

  int rc = 0;
  {
    std::unique_ptr<EtcdTestServer> etcd;
    if (store == "etcd") {
      auto started = EtcdTestServer::Start("bench");
      if (!started.ok()) {
        std::fprintf(stderr, "etcd: %s\n", started.status().ToString().c_str());
        return 1;
      }
      etcd = std::move(*started);
    }
    std::vector<std::string> sockets;
    std::vector<ChildProcess> processes;
    for (int i = 0; i < replicas; ++i) {
      sockets.push_back((dir / absl::StrCat("r", i, ".sock")).string());
      std::vector<std::string> argv = {EBPFCNI_IDENTITY_BINARY, "--store=" + store, "--socket=" + sockets[i],
                                       "--state_dir=" + (dir / absl::StrCat("state", i)).string(),
                                       "--log_level=" + absl::GetFlag(FLAGS_replica_log_level)};
      if (etcd) {
        argv.push_back("--etcd_endpoints=" + etcd->endpoint());
        argv.push_back(absl::StrCat("--etcd_prefix=/ebpfcni-bench-", getpid(), "/"));
      }
      auto process = ChildProcess::Start(argv, (dir / absl::StrCat("r", i, ".log")).string());
      if (!process.ok()) {
        std::fprintf(stderr, "replica %d: %s\n", i, process.status().ToString().c_str());
        return 1;
      }
      processes.push_back(std::move(*process));
    }
    for (const auto& socket : sockets) {
      if (!WaitServing(socket)) {
        std::fprintf(stderr, "replica at %s did not start (logs in %s)\n", socket.c_str(), dir.c_str());
        return 1;
      }
    }
    auto channel = ebpfcni::MakeBalancedChannel(sockets);
    if (!channel.ok()) {
      std::fprintf(stderr, "%s\n", channel.status().ToString().c_str());
      return 1;
    }
    auto stub = v1::IdentityService::NewStub(*channel);
    std::printf("store=%s replicas=%d clients=%d\n", store.c_str(), replicas, clients);

    // The node's session first, as a datapath service would.
    {
      grpc::ClientContext context;
      ebpfcni::SetDeadline(context, std::chrono::seconds(10));
      v1::NodeHeartbeatRequest request;
      request.set_node("bench-node");
      request.set_ttl_seconds(60);
      v1::NodeHeartbeatResponse response;
      if (!stub->NodeHeartbeat(&context, request, &response).ok()) rc = 1;
    }

    // A watcher on the last replica notes when each identity reaches it.
    std::mutex watch_mu;
    std::map<uint32_t, Clock::time_point> delivered, returned;
    grpc::ClientContext watch_context;
    auto watch_stub = v1::IdentityService::NewStub(ebpfcni::MakeChannel(sockets.back()));
    auto watch_reader = watch_stub->WatchIdentities(&watch_context, {});
    {
      v1::WatchIdentitiesResponse event;
      while (watch_reader->Read(&event) && event.kind() != v1::CHANGE_KIND_SNAPSHOT_DONE) {
      }
    }
    std::thread watcher([&] {
      v1::WatchIdentitiesResponse event;
      while (watch_reader->Read(&event)) {
        if (event.kind() != v1::CHANGE_KIND_UPSERT) continue;
        std::lock_guard<std::mutex> lock(watch_mu);
        delivered.emplace(event.identity().id(), Clock::now());
      }
    });

    const int allocations = absl::GetFlag(FLAGS_allocations);
    Result allocated = Run(allocations, clients, [&](int i) {
      v1::AllocateIdentityRequest request;
      FillLabels(i, request.mutable_labels());
      request.mutable_owner()->set_node("bench-node");
      request.mutable_owner()->set_endpoint(absl::StrCat("ep", i));
      grpc::ClientContext context;
      ebpfcni::SetDeadline(context, std::chrono::seconds(10));
      v1::AllocateIdentityResponse response;
      bool ok = stub->AllocateIdentity(&context, request, &response).ok() && response.newly_allocated();
      if (ok) {
        std::lock_guard<std::mutex> lock(watch_mu);
        returned.emplace(response.identity().id(), Clock::now());
      }
      return ok;
    });
    Report("first-allocation", allocated);

    // Give every replica's cache a moment to see the last allocations.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    Result looked_up = Run(absl::GetFlag(FLAGS_lookups), clients, [&](int i) {
      v1::LookupIdentityRequest request;
      FillLabels(i % std::max(1, allocations), request.mutable_labels());
      grpc::ClientContext context;
      ebpfcni::SetDeadline(context, std::chrono::seconds(10));
      v1::LookupIdentityResponse response;
      return stub->LookupIdentity(&context, request, &response).ok();
    });
    Report("lookup", looked_up);

    Result heartbeats = Run(absl::GetFlag(FLAGS_heartbeats), clients, [&](int) {
      v1::NodeHeartbeatRequest request;
      request.set_node("bench-node");
      request.set_ttl_seconds(60);
      grpc::ClientContext context;
      ebpfcni::SetDeadline(context, std::chrono::seconds(10));
      v1::NodeHeartbeatResponse response;
      return stub->NodeHeartbeat(&context, request, &response).ok();
    });
    Report("node-heartbeat", heartbeats);
    Result upserts = Run(absl::GetFlag(FLAGS_ipcache), clients, [&](int i) {
      v1::UpsertIpCacheEntryRequest request;
      request.mutable_entry()->set_prefix(absl::StrCat("10.", 100 + i / 65536, ".", (i / 256) % 256, ".", i % 256));
      request.mutable_entry()->set_identity(256);
      request.mutable_entry()->set_owner_node("bench-node");
      grpc::ClientContext context;
      ebpfcni::SetDeadline(context, std::chrono::seconds(10));
      v1::UpsertIpCacheEntryResponse response;
      grpc::Status status = stub->UpsertIpCacheEntry(&context, request, &response);
      if (!status.ok()) {
        static std::atomic<int> reported{0};
        if (reported++ < 3) std::fprintf(stderr, "UpsertIpCacheEntry(%s): %d %s\n", request.entry().prefix().c_str(),
                                         status.error_code(), status.error_message().c_str());
      }
      return status.ok();
    });
    Report("ipcache-upsert", upserts);

    watch_context.TryCancel();
    watcher.join();
    watch_reader->Finish();
    // Delivery before the allocating call returned counts as 0.
    Result delivery;
    for (const auto& [id, at] : returned) {
      auto it = delivered.find(id);
      if (it == delivered.end()) {
        ++delivery.errors;  // never delivered
        continue;
      }
      delivery.latencies_us.push_back(std::max(0.0, std::chrono::duration<double, std::micro>(it->second - at).count()));
    }
    std::sort(delivery.latencies_us.begin(), delivery.latencies_us.end());
    Report("watch-delivery", delivery, /*with_throughput=*/false);
    if (allocated.errors || looked_up.errors || heartbeats.errors || upserts.errors || delivery.errors) rc = 1;
  }
  if (absl::GetFlag(FLAGS_keep_logs)) {
    std::printf("logs kept in %s\n", dir.c_str());
  } else {
    std::filesystem::remove_all(dir);
  }
  return rc;
}
