// ebpf-cni-identity: security identities for label sets.
//
// Single node (default, --store=sqlite): one process over the embedded
// SQLite store under --state_dir. Scaled out (--store=etcd): any number of
// stateless, interchangeable replicas over the etcd at --etcd_endpoints;
// clients balance over them (MakeBalancedChannel). Every RPC of
// ebpfcni.identity.v1 is served; ResolvePod takes the pod's labels from the
// caller until a cluster-state source exists.
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/time/time.h>
#include <spdlog/spdlog.h>

#include "common/service/service_flags.h"
#include "services/identity/etcd/etcd_identity_store.h"
#include "services/identity/identity_service.h"
#include "services/identity/reserved_identities.h"
#include "services/identity/sqlite_identity_store.h"

ABSL_FLAG(std::string, store, "sqlite",
          "Identity store: \"sqlite\" (embedded, one replica) or \"etcd\" (shared by any number of replicas)");
ABSL_FLAG(std::string, state_dir, "/var/lib/ebpf-cni", "Directory of the embedded identity store (identity.db)");
ABSL_FLAG(std::vector<std::string>, etcd_endpoints, {"127.0.0.1:2379"},
          "Comma-separated etcd client endpoints (host:port); requests are balanced round-robin over them");
ABSL_FLAG(std::string, etcd_prefix, "/ebpf-cni/identities/",
          "Key prefix of the identities in etcd; replicas sharing it share identities");
ABSL_FLAG(absl::Duration, lease_ttl, absl::Seconds(15),
          "TTL of this replica's own etcd lease (it only carries the replica's history fence key)");
ABSL_FLAG(absl::Duration, node_ttl, absl::Seconds(15),
          "Default liveness TTL of a node (NodeHeartbeat without a TTL, or a node first seen allocating): "
          "a node silent this long loses its references and ipcache entries");
ABSL_FLAG(absl::Duration, etcd_timeout, absl::Seconds(5), "Deadline of every etcd request");
ABSL_FLAG(absl::Duration, gc_grace, absl::Minutes(10),
          "How long an identity without references is kept before it is deleted");
ABSL_FLAG(absl::Duration, gc_interval, absl::Minutes(1), "How often unreferenced identities are collected");
ABSL_FLAG(std::vector<std::string>, label_filter, {},
          "Comma-separated label key patterns replacing the default filter; \"!re\" excludes, \"re\" includes");

namespace {

absl::StatusOr<std::unique_ptr<ebpfcni::identity::IdentityStore>> OpenStore() {
  using namespace ebpfcni::identity;
  const std::string kind = absl::GetFlag(FLAGS_store);
  if (kind == "etcd") {
    etcd::EtcdIdentityStoreOptions options;
    options.client.endpoints = absl::GetFlag(FLAGS_etcd_endpoints);
    options.client.request_timeout = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_etcd_timeout));
    options.prefix = absl::GetFlag(FLAGS_etcd_prefix);
    options.first_id = kFirstAllocatableIdentity;
    options.last_id = kLastAllocatableIdentity;
    options.lease_ttl_seconds = absl::ToInt64Seconds(absl::GetFlag(FLAGS_lease_ttl));
    options.node_ttl_seconds = absl::ToInt64Seconds(absl::GetFlag(FLAGS_node_ttl));
    spdlog::info("identity store: etcd at {} under {}", absl::StrJoin(options.client.endpoints, ","), options.prefix);
    auto store = etcd::EtcdIdentityStore::Open(std::move(options));
    if (!store.ok()) return store.status();
    return std::unique_ptr<IdentityStore>(std::move(*store));
  }
  if (kind != "sqlite") {
    return absl::InvalidArgumentError("--store must be \"sqlite\" or \"etcd\", not \"" + kind + "\"");
  }
  std::filesystem::path state_dir = absl::GetFlag(FLAGS_state_dir);
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    return absl::InternalError("cannot create state directory " + state_dir.string() + ": " + ec.message());
  }
  auto store = SqliteIdentityStore::Open((state_dir / "identity.db").string(),
                                         {kFirstAllocatableIdentity, kLastAllocatableIdentity},
                                         absl::GetFlag(FLAGS_node_ttl));
  if (!store.ok()) return store.status();
  return std::unique_ptr<IdentityStore>(std::move(*store));
}

}  // namespace

int main(int argc, char** argv) {
  ebpfcni::BlockTerminationSignals();
  absl::SetProgramUsageMessage("ebpf-cni identity service");
  absl::ParseCommandLine(argc, argv);
  ebpfcni::InitLogging("identity", ebpfcni::LogOptionsFromFlags());
  using namespace ebpfcni::identity;

  auto patterns = absl::GetFlag(FLAGS_label_filter);
  auto filter = patterns.empty() ? LabelFilter::Default() : LabelFilter::FromPatterns(patterns);
  if (!filter.ok()) {
    spdlog::critical("--label_filter: {}", filter.status().ToString());
    return 2;
  }
  auto store = OpenStore();
  if (!store.ok()) {
    spdlog::critical("cannot open identity store: {}", store.status().ToString());
    return 1;
  }
  IdentityServiceImpl identity(**store, *filter);

  std::mutex gc_mu;
  std::condition_variable gc_cv;
  bool stopping = false;
  std::thread gc([&] {
    std::unique_lock<std::mutex> lock(gc_mu);
    while (!gc_cv.wait_for(lock, absl::ToChronoSeconds(absl::GetFlag(FLAGS_gc_interval)), [&] { return stopping; })) {
      if (auto status = identity.CollectGarbage(absl::GetFlag(FLAGS_gc_grace)); !status.ok()) {
        spdlog::warn("identity garbage collection failed: {}", status.ToString());
      }
    }
  });

  auto status = ebpfcni::ServeUntilSignal(ebpfcni::ListenOptionsFromFlags("/run/ebpf-cni/identity.sock"),
                                          {{&identity, "ebpfcni.identity.v1.IdentityService"}});
  identity.StopWatches();
  {
    std::lock_guard<std::mutex> lock(gc_mu);
    stopping = true;
  }
  gc_cv.notify_all();
  gc.join();
  if (!status.ok()) {
    spdlog::critical("identity service failed: {}", status.ToString());
    return 1;
  }
  return 0;
}
