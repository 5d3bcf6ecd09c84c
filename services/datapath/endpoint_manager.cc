#include "services/datapath/endpoint_manager.h"

#include <ifaddrs.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>

#include <algorithm>
#include <set>
#include <utility>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "common/net/ip_address.h"
#include "ebpfcni/datapath_abi.h"
#include "services/datapath/bpf_filesystem.h"
#include "services/datapath/conntrack_map.h"
#include "services/datapath/network_interface.h"
#include "services/datapath/packet_builder.h"
#include "services/datapath/tc_attacher.h"

namespace ebpfcni::datapath {
namespace {

std::string Describe(const EndpointKey& key) {
  return absl::StrCat(key.container_id, "/", key.interface_name);
}

constexpr TcDirection kFromContainer = TcDirection::kIngress;
constexpr TcDirection kToContainer = TcDirection::kEgress;

IpPrefix HostPrefix(const IpAddress& address) {
  return IpPrefix(address, address.max_prefix_length());
}

// The addresses of the record that parse (CreateEndpoint validated them).
std::vector<IpAddress> AddressesOf(const EndpointRecord& record) {
  std::vector<IpAddress> addresses;
  for (const std::string& text : record.addresses) {
    if (absl::StatusOr<IpAddress> address = IpAddress::Parse(text); address.ok()) {
      addresses.push_back(*address);
    }
  }
  return addresses;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EndpointManager>> EndpointManager::Start(
    const EndpointManagerOptions& options) {
  if (absl::Status status = PrepareBpfDir(options.bpf_dir); !status.ok()) return status;
  BpfLoadOptions load_options;
  load_options.pin_dir = options.bpf_dir;
  load_options.conntrack = options.conntrack;
  load_options.policy_counter_slots = options.policy_counter_slots;
  absl::StatusOr<std::unique_ptr<BpfObjects>> bpf = BpfObjects::Load(load_options);
  if (!bpf.ok()) return bpf.status();
  absl::StatusOr<std::unique_ptr<TcAttacher>> clsact =
      MakeTcAttacher(TcAttachMode::kClsact, options.bpf_dir);
  if (!clsact.ok()) return clsact.status();
  std::unique_ptr<TcAttacher> tcx;
  if (!options.bpf_dir.empty() && KernelSupportsTcx()) {
    absl::StatusOr<std::unique_ptr<TcAttacher>> made =
        MakeTcAttacher(TcAttachMode::kTcx, options.bpf_dir);
    if (!made.ok()) return made.status();
    tcx = *std::move(made);
  }
  TcAttachMode default_mode =
      options.tc_attach_mode == TcAttachMode::kTcx ? TcAttachMode::kTcx : TcAttachMode::kClsact;
  if (default_mode == TcAttachMode::kTcx && tcx == nullptr) {
    return absl::FailedPreconditionError(
        "TCX attachment needs Linux 6.6 or newer and a BPF pin directory; use --tc_attach=clsact");
  }
  spdlog::info("programs go on host veths as {} unless an endpoint asks otherwise (TCX {})",
               TcAttachModeName(default_mode), tcx ? "available" : "unavailable");
  absl::StatusOr<std::unique_ptr<StateStore>> store =
      StateStore::Open(absl::StrCat(options.state_dir, "/datapath/state.db"),
                       absl::StrCat(options.state_dir, "/datapath"));
  if (!store.ok()) return store.status();
  absl::StatusOr<std::unique_ptr<EndpointRegistry>> registry =
      EndpointRegistry::Open(store->get());
  if (!registry.ok()) return registry.status();

  std::unique_ptr<EndpointManager> manager(
      new EndpointManager(*std::move(bpf), *std::move(clsact), std::move(tcx), default_mode,
                          *std::move(store),
                          *std::move(registry)));
  manager->default_identity_ = options.default_identity;
  const ProgramIds& ids = manager->bpf_->program_ids();
  const ProgramIds& previous = manager->bpf_->previous_program_ids();
  spdlog::info("loaded BPF programs from_container={} to_container={} (previous run: {} / {})",
               ids.from_container, ids.to_container, previous.from_container,
               previous.to_container);
  {
    absl::MutexLock lock(&manager->mutex_);
    if (options.map_host_addresses) {
      if (absl::Status status = manager->MapHostAddresses(); !status.ok()) return status;
    }
    if (absl::Status status = manager->Restore(); !status.ok()) return status;
  }
  if (options.prefill_spares > 0) {
    manager->spare_filler_ =
        std::thread([m = manager.get(), n = options.prefill_spares] { m->FillSpares(n); });
  }
  // Address changes keep the host's ipcache entries current; link changes
  // tell watchers when an endpoint's interface disappears underneath it.
  std::function<void()> on_addresses;
  if (options.map_host_addresses) {
    on_addresses = [m = manager.get()] {
      if (absl::Status status = m->RefreshHostAddresses(); !status.ok()) {
        spdlog::error("refreshing host addresses in the ipcache: {}", status.ToString());
      }
    };
  }
  absl::StatusOr<std::unique_ptr<HostAddressMonitor>> monitor = HostAddressMonitor::Start(
      std::move(on_addresses), [m = manager.get()] { m->RefreshInterfaceStates(); });
  if (!monitor.ok()) return monitor.status();
  manager->address_monitor_ = *std::move(monitor);
  if (options.map_host_addresses) {
    // An address added between the first read and the subscription.
    if (absl::Status status = manager->RefreshHostAddresses(); !status.ok()) return status;
  }
  return manager;
}

namespace {

PolicySummary SummaryOf(const std::optional<EndpointPolicy>& policy) {
  PolicySummary summary;
  if (!policy.has_value()) return summary;
  summary.installed = true;
  summary.ingress_isolated = policy->ingress_isolated;
  summary.egress_isolated = policy->egress_isolated;
  summary.verdict_events = policy->verdict_events;
  summary.rule_count = static_cast<uint32_t>(policy->rules.size());
  return summary;
}

}  // namespace

EndpointManager::~EndpointManager() {
  stopping_ = true;
  if (spare_filler_.joinable()) spare_filler_.join();
}

size_t EndpointManager::spare_count() {
  absl::MutexLock lock(&mutex_);
  return spare_ids_.size();
}

void EndpointManager::FillSpares(int count) {
  // From the top of the id space down, away from the round-robin ids new
  // endpoints get when no spare is left.
  uint32_t candidate = EBPFCNI_MAX_ENDPOINT_ID;
  for (int made = 0; made < count && candidate > 0 && !stopping_.load(); --candidate) {
    {
      absl::MutexLock lock(&mutex_);
      if (registry_->IdInUse(candidate) ||
          std::find(spare_ids_.begin(), spare_ids_.end(), candidate) != spare_ids_.end()) {
        continue;
      }
      if (policy_.HasMap(candidate)) {
        // A spare (or stale map) of an earlier run: reuse it if it is one.
        if (policy_.HasSpare(candidate)) {
          spare_ids_.insert(spare_ids_.begin(), candidate);
          ++made;
        }
        continue;
      }
      spare_reserved_.insert(candidate);
    }
    // The grace period without the lock: ADDs go on meanwhile, and none can
    // take this id (reserved).
    absl::Status status = PolicyMap(*bpf_)
                              .InstallSpare(candidate);
    absl::MutexLock lock(&mutex_);
    spare_reserved_.erase(candidate);
    if (!status.ok()) {
      spdlog::warn("preparing spare policy maps: {}", status.ToString());
      return;
    }
    // Behind the spares of deleted endpoints (taken from the back).
    spare_ids_.insert(spare_ids_.begin(), candidate);
    ++made;
  }
}

absl::Status EndpointManager::InstallPolicy(const EndpointKey& key, uint32_t endpoint_id,
                                           const std::optional<EndpointPolicy>& policy,
                                           PolicyMap::Write write) {
  // Whatever happens below, the cache must not claim a policy the kernel
  // may not have: forget it, refill on success.
  policy_summaries_.erase(endpoint_id);
  if (!policy.has_value()) {
    if (absl::Status status = policy_.Clear(endpoint_id, write); !status.ok()) return status;
    policy_summaries_[endpoint_id] = PolicySummary{};
    return store_->RemovePolicy(endpoint_id);
  }
  if (absl::Status status = policy_.Replace(endpoint_id, *policy, write); !status.ok()) {
    // Say whose policy did not fit or failed: the caller may be pushing
    // many endpoints.
    return absl::Status(status.code(), absl::StrCat("endpoint ", Describe(key), " (id ",
                                                    endpoint_id, "): ", status.message()));
  }
  policy_summaries_[endpoint_id] = SummaryOf(policy);
  return store_->SavePolicy(endpoint_id, *policy);
}

PolicySummary EndpointManager::CachedPolicySummary(uint32_t endpoint_id) {
  if (auto it = policy_summaries_.find(endpoint_id); it != policy_summaries_.end()) {
    return it->second;
  }
  absl::StatusOr<std::optional<EndpointPolicy>> installed = policy_.Read(endpoint_id);
  if (!installed.ok()) {
    spdlog::warn("reading the policy of endpoint id {}: {}", endpoint_id,
                 installed.status().ToString());
    return PolicySummary{};
  }
  PolicySummary summary = SummaryOf(*installed);
  policy_summaries_[endpoint_id] = summary;
  return summary;
}

EndpointStatus EndpointManager::WatchViewOf(const EndpointRecord& record) {
  EndpointStatus view;
  view.record = record;
  view.record.attach_mode = ModeOf(record);
  view.policy = CachedPolicySummary(record.endpoint_id);
  view.state = AttachmentStateOf(record);
  return view;
}

AttachmentState EndpointManager::AttachmentStateOf(const EndpointRecord& record) {
  if (!InterfaceStillNamed(record.host_ifindex, record.host_interface_name)) {
    return AttachmentState::kInterfaceGone;
  }
  int ifindex = static_cast<int>(record.host_ifindex);
  absl::StatusOr<uint32_t> ingress = AttacherFor(record).Query(ifindex, kFromContainer);
  absl::StatusOr<uint32_t> egress = AttacherFor(record).Query(ifindex, kToContainer);
  bool attached = ingress.ok() && egress.ok() &&
                  *ingress == bpf_->program_ids().from_container &&
                  *egress == bpf_->program_ids().to_container;
  return attached ? AttachmentState::kAttached : AttachmentState::kDetached;
}

void EndpointManager::RefreshInterfaceStates() {
  absl::MutexLock lock(&mutex_);
  if (watchers_.size() == 0) return;
  // Only "is the interface still there": one ifindex lookup per endpoint,
  // cheap enough for every link notification of a busy node.
  std::vector<EndpointKey> gone;
  for (const auto& [key, view] : published_) {
    if (view.state != AttachmentState::kInterfaceGone &&
        !InterfaceStillNamed(view.record.host_ifindex, view.record.host_interface_name)) {
      gone.push_back(key);
    }
  }
  for (const EndpointKey& key : gone) PublishChange(key);
}

void EndpointManager::PublishChange(const EndpointKey& key) {
  if (watchers_.size() == 0) {
    published_.clear();  // the next watch starts from its own snapshot
    return;
  }
  std::optional<EndpointRecord> record = registry_->Find(key);
  if (!record.has_value()) return;
  EndpointStatus view = WatchViewOf(*record);
  auto it = published_.find(key);
  if (it != published_.end() && it->second == view) return;  // nothing a watcher can see
  EndpointChange change;
  change.type = it == published_.end() ? EndpointChangeType::kCreated
                                        : EndpointChangeType::kUpdated;
  change.endpoint = view;
  published_[key] = std::move(view);
  watchers_.Publish(change);
}

void EndpointManager::PublishDeleted(const EndpointRecord& record) {
  if (watchers_.size() == 0) {
    published_.clear();
    return;
  }
  EndpointChange change;
  change.type = EndpointChangeType::kDeleted;
  if (auto it = published_.find(record.key); it != published_.end()) {
    change.endpoint = it->second;
    published_.erase(it);
  } else {
    change.endpoint.record = record;
    change.endpoint.state = AttachmentState::kInterfaceGone;
  }
  watchers_.Publish(change);
}

std::shared_ptr<EndpointWatch> EndpointManager::Watch(size_t capacity) {
  absl::MutexLock lock(&mutex_);
  // Snapshot and registration under the same lock as every change: nothing
  // can happen between them, so the watcher misses nothing and sees
  // nothing twice.
  std::vector<EndpointStatus> snapshot;
  if (watchers_.size() == 0) published_.clear();
  for (const EndpointRecord& record : registry_->List()) {
    auto it = published_.find(record.key);
    if (it == published_.end()) {
      it = published_.emplace(record.key, WatchViewOf(record)).first;
    }
    snapshot.push_back(it->second);
  }
  return watchers_.Add(std::move(snapshot), capacity);
}

void EndpointManager::Unwatch(const std::shared_ptr<EndpointWatch>& watch) {
  watchers_.Remove(watch);
}

absl::Status EndpointManager::RestorePolicy(const EndpointRecord& record) {
  absl::StatusOr<std::optional<EndpointPolicy>> installed = policy_.Read(record.endpoint_id);
  if (!installed.ok()) return installed.status();
  if (installed->has_value()) return absl::OkStatus();  // the kernel's copy is live
  absl::StatusOr<std::optional<EndpointPolicy>> stored = store_->LoadPolicy(record.endpoint_id);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return absl::OkStatus();  // it never had one
  spdlog::warn("endpoint {} (id {}): its pinned policy is gone; reinstalling the stored copy "
               "({} rules)",
               Describe(record.key), record.endpoint_id, (*stored)->rules.size());
  policy_summaries_.erase(record.endpoint_id);
  if (absl::Status status = policy_.Replace(record.endpoint_id, **stored); !status.ok()) {
    return status;
  }
  policy_summaries_[record.endpoint_id] = SummaryOf(*stored);
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::set<IpAddress>> InterfaceAddresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return absl::InternalError(absl::StrCat("listing host addresses: ", std::strerror(errno)));
  }
  std::set<IpAddress> addresses;
  for (ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr) continue;
    if (entry->ifa_addr->sa_family == AF_INET) {
      addresses.insert(IpAddress::FromV4Bytes(reinterpret_cast<const uint8_t*>(
          &reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr)));
    } else if (entry->ifa_addr->sa_family == AF_INET6) {
      addresses.insert(IpAddress::FromV6Bytes(reinterpret_cast<const uint8_t*>(
          &reinterpret_cast<const sockaddr_in6*>(entry->ifa_addr)->sin6_addr)));
    }
  }
  freeifaddrs(list);
  return addresses;
}

}  // namespace

absl::Status EndpointManager::MapHostAddresses() {
  absl::StatusOr<std::set<IpAddress>> current = InterfaceAddresses();
  if (!current.ok()) return current.status();
  for (const IpAddress& address : *current) {
    if (!host_addresses_.contains(address)) {
      if (absl::Status status = ipcache_.Upsert(HostPrefix(address), EBPFCNI_IDENTITY_HOST);
          !status.ok()) {
        return status;
      }
      spdlog::info("host address {} -> identity host", address.ToString());
    }
  }
  for (const IpAddress& address : host_addresses_) {
    if (current->contains(address)) continue;
    // Only our own entry: an endpoint or UpsertPrefixIdentity may have
    // taken the address over since.
    absl::StatusOr<uint32_t> identity = ipcache_.Lookup(address);
    if (!identity.ok()) return identity.status();
    if (*identity != EBPFCNI_IDENTITY_HOST) continue;
    absl::StatusOr<bool> deleted = ipcache_.Delete(HostPrefix(address));
    if (!deleted.ok()) return deleted.status();
    spdlog::info("host address {} is gone; removed from the ipcache", address.ToString());
  }
  host_addresses_ = *std::move(current);
  return absl::OkStatus();
}

absl::Status EndpointManager::RefreshHostAddresses() {
  absl::MutexLock lock(&mutex_);
  return MapHostAddresses();
}

absl::Status EndpointManager::FlushConntrack(const EndpointRecord& record) {
  // Addresses another endpoint still has (a retried ADD on a new veth)
  // keep their flows.
  std::set<IpAddress> still_used;
  for (const EndpointRecord& other : registry_->List()) {
    if (other.key == record.key) continue;
    for (const IpAddress& address : AddressesOf(other)) still_used.insert(address);
  }
  std::vector<IpAddress> addresses;
  for (const IpAddress& address : AddressesOf(record)) {
    if (!still_used.contains(address)) addresses.push_back(address);
  }
  absl::StatusOr<size_t> deleted =
      ConntrackMap(*bpf_).DeleteEndpointFlows(record.endpoint_id, addresses);
  if (!deleted.ok()) return deleted.status();
  if (*deleted > 0) {
    spdlog::info("endpoint {} (id {}): flushed {} conntrack entries", Describe(record.key),
                 record.endpoint_id, *deleted);
  }
  return absl::OkStatus();
}

absl::Status EndpointManager::MapEndpointAddresses(const EndpointRecord& record) {
  // Without an identity the pod's addresses stay "world" to its peers.
  if (record.identity == EBPFCNI_IDENTITY_UNKNOWN) return absl::OkStatus();
  for (const IpAddress& address : AddressesOf(record)) {
    if (absl::Status status = ipcache_.Upsert(HostPrefix(address), record.identity);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status EndpointManager::UnmapEndpointAddresses(const EndpointRecord& record) {
  std::set<IpAddress> still_used;
  for (const EndpointRecord& other : registry_->List()) {
    if (other.key == record.key) continue;
    for (const IpAddress& address : AddressesOf(other)) still_used.insert(address);
  }
  for (const IpAddress& address : AddressesOf(record)) {
    if (still_used.contains(address)) continue;
    absl::StatusOr<bool> deleted = ipcache_.Delete(HostPrefix(address));
    if (!deleted.ok()) return deleted.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<PolicySummary> EndpointManager::SummarizePolicy(uint32_t endpoint_id) {
  PolicySummary summary;
  absl::StatusOr<std::optional<EndpointPolicy>> policy = policy_.Read(endpoint_id);
  if (!policy.ok()) return policy.status();
  if (!policy->has_value()) return summary;
  summary.installed = true;
  summary.ingress_isolated = (*policy)->ingress_isolated;
  summary.egress_isolated = (*policy)->egress_isolated;
  summary.verdict_events = (*policy)->verdict_events;
  summary.rule_count = static_cast<uint32_t>((*policy)->rules.size());
  absl::StatusOr<std::vector<PolicyEntryCounters>> counters = policy_.ReadCounters(endpoint_id);
  if (!counters.ok()) return counters.status();
  for (const PolicyEntryCounters& entry : *counters) {
    summary.rule_hit_packets += entry.packets;
    summary.rule_hit_bytes += entry.bytes;
  }
  return summary;
}

absl::Status EndpointManager::Restore() {
  // Every live endpoint's addresses first: a program attached below looks
  // up its peers, which may be endpoints restored later in the loop (and an
  // ipcache recreated by a layout change starts empty).
  for (const EndpointRecord& record : registry_->List()) {
    if (!InterfaceStillNamed(record.host_ifindex, record.host_interface_name)) continue;
    if (absl::Status status = MapEndpointAddresses(record); !status.ok()) return status;
  }
  for (const EndpointRecord& record : registry_->List()) {
    if (!InterfaceStillNamed(record.host_ifindex, record.host_interface_name)) {
      spdlog::info("removing stale endpoint {} (id {}): interface {} (ifindex {}) is gone",
                   Describe(record.key), record.endpoint_id, record.host_interface_name,
                   record.host_ifindex);
      if (absl::Status status = Forget(record); !status.ok()) return status;
      restore_summary_.removed_stale.push_back(record.key);
      continue;
    }
    // Policy first: the new programs must never see the endpoint without it.
    absl::Status status = RestorePolicy(record);
    if (status.ok()) status = Attach(record);
    if (!status.ok()) {
      // One bad endpoint must not keep the datapath (and every other pod's
      // CNI calls) down: a pod torn down right now loses its veth mid-way,
      // anything else is left for CreateEndpoint/GarbageCollect to settle.
      if (!InterfaceStillNamed(record.host_ifindex, record.host_interface_name)) {
        spdlog::info("removing stale endpoint {} (id {}): interface {} vanished during restore",
                     Describe(record.key), record.endpoint_id, record.host_interface_name);
        if (absl::Status forget = Forget(record); !forget.ok()) return forget;
        restore_summary_.removed_stale.push_back(record.key);
      } else {
        spdlog::error("could not re-adopt endpoint {} (id {}) on {}: {}; it stays registered "
                      "but unattached until CreateEndpoint is retried",
                      Describe(record.key), record.endpoint_id, record.host_interface_name,
                      status.ToString());
        restore_summary_.failed.push_back(record.key);
      }
      continue;
    }
    spdlog::info("re-adopted endpoint {} (id {}) on {} (ifindex {})", Describe(record.key),
                 record.endpoint_id, record.host_interface_name, record.host_ifindex);
    restore_summary_.readopted.push_back(record.key);
  }
  // Links of endpoints a crash forgot between detaching and deregistering.
  std::set<int> endpoint_ifindexes;
  for (const EndpointRecord& record : registry_->List()) {
    endpoint_ifindexes.insert(static_cast<int>(record.host_ifindex));
  }
  if (tcx_ != nullptr) {
    if (absl::Status status = tcx_->RemoveAllExcept(endpoint_ifindexes); !status.ok()) {
      return status;
    }
  }
  return RemoveOrphanMapEntries();
}

// Entries without a record come from a crash between writing the map and
// the registry; nothing would ever delete them otherwise.
absl::Status EndpointManager::RemoveOrphanMapEntries() {
  std::set<std::pair<uint32_t, uint32_t>> wanted;
  std::set<uint32_t> ids;
  for (const EndpointRecord& record : registry_->List()) {
    wanted.emplace(record.host_ifindex, record.endpoint_id);
    ids.insert(record.endpoint_id);
  }
  absl::StatusOr<std::vector<std::pair<uint32_t, uint32_t>>> entries = bpf_->IfindexEntries();
  if (!entries.ok()) return entries.status();
  for (const auto& [ifindex, endpoint_id] : *entries) {
    if (wanted.contains({ifindex, endpoint_id})) continue;
    spdlog::info("removing orphaned ifindex map entry {} -> {}", ifindex, endpoint_id);
    if (absl::Status status = bpf_->RemoveIfindex(ifindex, endpoint_id); !status.ok()) {
      return status;
    }
  }
  absl::StatusOr<std::vector<uint32_t>> counted = bpf_->CountedEndpointIds();
  if (!counted.ok()) return counted.status();
  for (uint32_t endpoint_id : *counted) {
    if (ids.contains(endpoint_id)) continue;
    if (absl::Status status = bpf_->DeleteCounters(endpoint_id); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status EndpointManager::Attach(const EndpointRecord& record) {
  int ifindex = static_cast<int>(record.host_ifindex);
  if (absl::Status status = bpf_->SetEndpointForIfindex(record.host_ifindex, record.endpoint_id,
                                                       record.identity);
      !status.ok()) {
    return status;
  }
  const std::pair<TcDirection, std::pair<int, uint32_t>> wanted[] = {
      {kFromContainer, {bpf_->from_container_fd(), bpf_->program_ids().from_container}},
      {kToContainer, {bpf_->to_container_fd(), bpf_->program_ids().to_container}},
  };
  for (const auto& [direction, program] : wanted) {
    absl::StatusOr<uint32_t> attached = AttacherFor(record).Query(ifindex, direction);
    if (!attached.ok()) return attached.status();
    if (*attached == program.second) continue;  // already ours, nothing to do
    if (*attached != 0) {
      const ProgramIds& previous = bpf_->previous_program_ids();
      bool from_previous_run = *attached == previous.from_container ||
                               *attached == previous.to_container;
      spdlog::info("replacing TC {} program {} ({}) with {} on {}", TcDirectionName(direction),
                   *attached, from_previous_run ? "previous datapath run" : "unknown origin",
                   program.second, record.host_interface_name);
    }
    absl::StatusOr<uint32_t> id = AttacherFor(record).Attach(ifindex, direction, program.first);
    if (!id.ok()) return id.status();
  }
  return absl::OkStatus();
}

absl::Status EndpointManager::DetachAll(uint32_t ifindex, bool interface_is_ours) {
  for (TcAttacher* attacher : {clsact_.get(), tcx_.get()}) {
    if (attacher == nullptr) continue;
    for (TcDirection direction : {kFromContainer, kToContainer}) {
      if (absl::Status status =
              attacher->Detach(static_cast<int>(ifindex), direction, interface_is_ours);
          !status.ok()) {
        return status;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status EndpointManager::Forget(const EndpointRecord& record) {
  // An ifindex naming another interface now belongs to someone else (the
  // kernel reused it); its attachments are not ours to remove. A deleted
  // veth took its qdisc and filters with it, but a TCX link's pin outlives
  // it and is removed here.
  if (absl::Status status = DetachAll(
          record.host_ifindex, InterfaceStillNamed(record.host_ifindex, record.host_interface_name));
      !status.ok()) {
    return status;
  }
  if (absl::Status status = bpf_->RemoveIfindex(record.host_ifindex, record.endpoint_id);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = bpf_->DeleteCounters(record.endpoint_id); !status.ok()) return status;
  // The programs no longer map any interface to this id: empty its policy
  // map where it is and keep it for the id's next owner (no grace period).
  if (absl::Status status = InstallPolicy(record.key, record.endpoint_id, std::nullopt,
                                          PolicyMap::Write::kInPlaceWhileUnused);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = UnmapEndpointAddresses(record); !status.ok()) return status;
  // After the programs are detached and the addresses unmapped, so no flow
  // of the old endpoint is created again behind the flush.
  if (absl::Status status = FlushConntrack(record); !status.ok()) return status;
  absl::StatusOr<bool> removed = registry_->Remove(record.key);
  if (!removed.ok()) return removed.status();
  policy_summaries_.erase(record.endpoint_id);
  ++id_generation_;
  if (policy_.HasSpare(record.endpoint_id)) {
    spare_ids_.push_back(record.endpoint_id);
    constexpr size_t kMaxSpares = 1024;  // bounded memory: ~64 entries each
    if (spare_ids_.size() > kMaxSpares) spare_ids_.erase(spare_ids_.begin());
  }
  PublishDeleted(record);
  return absl::OkStatus();
}

absl::StatusOr<EndpointStatus> EndpointManager::StatusOf(const EndpointRecord& record) {
  EndpointStatus status;
  status.record = record;
  status.record.attach_mode = ModeOf(record);
  absl::StatusOr<EndpointCounters> counters = bpf_->ReadCounters(record.endpoint_id);
  if (!counters.ok()) return counters.status();
  status.counters = *counters;
  absl::StatusOr<PolicySummary> policy = SummarizePolicy(record.endpoint_id);
  if (!policy.ok()) return policy.status();
  status.policy = *policy;
  status.state = AttachmentStateOf(record);
  return status;
}

absl::StatusOr<EndpointStatus> EndpointManager::CreateEndpoint(
    const EndpointRecord& request, const std::optional<EndpointPolicy>& policy) {
  if (ModeOf(request) == TcAttachMode::kTcx && tcx_ == nullptr) {
    return absl::FailedPreconditionError(
        "TCX attachment was asked for, but this node has no TCX (Linux 6.6 or newer and a BPF pin "
        "directory); create the endpoint with clsact, or drop the pod's egress bandwidth limit");
  }
  if (request.key.container_id.empty()) {
    return absl::InvalidArgumentError("key.container_id is required");
  }
  if (request.key.interface_name.empty()) {
    return absl::InvalidArgumentError("key.interface_name is required");
  }
  if (request.host_ifindex == 0) {
    return absl::InvalidArgumentError("host_ifindex is required (the host-side veth's index)");
  }
  for (const std::string& address : request.addresses) {
    if (absl::StatusOr<IpAddress> parsed = IpAddress::Parse(address); !parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("addresses: \"", address, "\" is not an IP address (no prefix length)"));
    }
  }
  if (policy.has_value()) {
    if (absl::Status status = ValidatePolicy(*policy); !status.ok()) return status;
  }
  std::optional<std::string> actual_name = InterfaceName(request.host_ifindex);
  if (!actual_name.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no interface with ifindex ", request.host_ifindex,
        " in the datapath's network namespace; pass the host-side veth's index"));
  }
  if (!request.host_interface_name.empty() && request.host_interface_name != *actual_name) {
    return absl::FailedPreconditionError(
        absl::StrCat("ifindex ", request.host_ifindex, " is \"", *actual_name, "\", not \"",
                     request.host_interface_name, "\""));
  }

  absl::MutexLock lock(&mutex_);
  std::optional<EndpointRecord> existing = registry_->Find(request.key);
  std::optional<EndpointRecord> holder = registry_->FindByIfindex(request.host_ifindex);
  if (holder.has_value() && holder->key != request.key) {
    if (holder->host_interface_name == *actual_name) {
      return absl::AlreadyExistsError(absl::StrCat(
          "interface ", *actual_name, " already belongs to endpoint ", Describe(holder->key),
          "; delete that endpoint first"));
    }
    // The holder's interface is gone and the kernel gave its index to this
    // new one: the holder is stale.
    spdlog::info("removing stale endpoint {}: its ifindex {} now names {}",
                 Describe(holder->key), holder->host_ifindex, *actual_name);
    if (absl::Status status = Forget(*holder); !status.ok()) return status;
  }
  if (existing.has_value() && (existing->host_ifindex != request.host_ifindex ||
                               existing->host_interface_name != *actual_name)) {
    // Same endpoint on a new interface (e.g. a retried ADD recreated the
    // veth): take everything off the old one first.
    if (absl::Status status =
            DetachAll(existing->host_ifindex,
                      InterfaceStillNamed(existing->host_ifindex, existing->host_interface_name));
        !status.ok()) {
      return status;
    }
    if (absl::Status status = bpf_->RemoveIfindex(existing->host_ifindex, existing->endpoint_id);
        !status.ok()) {
      return status;
    }
  }

  EndpointRecord record = request;
  record.host_interface_name = *actual_name;
  // record.attach_mode stays as asked (kAuto: follow the node's default,
  // also after a restart that changed it).

  if (record.identity == EBPFCNI_IDENTITY_UNKNOWN) {
    record.identity = existing.has_value() && existing->identity != EBPFCNI_IDENTITY_UNKNOWN
                          ? existing->identity
                          : default_identity_;
  }
  // A new endpoint takes the id of a recently deleted one whose policy map
  // is a spare big enough for its policy: the policy is then written in
  // place instead of swapped in (which waits for an RCU grace period).
  uint32_t preferred_id = 0;
  if (!existing.has_value()) {
    size_t entries = policy.has_value() ? policy->rules.size() * 2 + 3 : 1;
    // Most recent first; spares too small for this policy stay for others.
    for (size_t i = spare_ids_.size(); i-- > 0 && preferred_id == 0;) {
      uint32_t candidate = spare_ids_[i];
      if (registry_->IdInUse(candidate) || !policy_.HasSpare(candidate)) {
        spare_ids_.erase(spare_ids_.begin() + static_cast<std::ptrdiff_t>(i));  // stale
      } else if (policy_.HasSpare(candidate, entries)) {
        preferred_id = candidate;
        spare_ids_.erase(spare_ids_.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
  }
  absl::StatusOr<EndpointRecord> stored = registry_->Put(record, preferred_id, &spare_reserved_);
  if (!stored.ok()) return stored.status();
  if (!existing.has_value()) {
    // A recycled id must not inherit counters or policy of its previous
    // owner.
    if (absl::Status status = bpf_->DeleteCounters(stored->endpoint_id); !status.ok()) {
      return status;
    }
  }
  // Identity and policy are in the maps before the programs can see the
  // endpoint: there is no moment in which its traffic bypasses policy.
  absl::Status prepared = absl::OkStatus();
  if (policy.has_value() || !existing.has_value()) {
    // A new endpoint is not in endpoint_ifidx yet: no program can see its
    // policy map, so it may be written in place.
    prepared = InstallPolicy(stored->key, stored->endpoint_id, policy,
                             existing.has_value() ? PolicyMap::Write::kAtomicSwap
                                                  : PolicyMap::Write::kInPlaceWhileUnused);
  }
  if (prepared.ok()) prepared = MapEndpointAddresses(*stored);
  if (!prepared.ok()) {
    if (!existing.has_value()) {
      if (absl::Status cleanup = Forget(*stored); !cleanup.ok()) {
        spdlog::warn("cleaning up endpoint {} after failed setup: {}", Describe(request.key),
                     cleanup.ToString());
      }
    } else {
      PublishChange(request.key);  // part of the update may have happened
    }
    return prepared;
  }
  if (absl::Status status = Attach(*stored); !status.ok()) {
    if (!existing.has_value()) {
      // Leave no half-made endpoint behind; the caller will retry.
      if (absl::Status cleanup = Forget(*stored); !cleanup.ok()) {
        spdlog::warn("cleaning up endpoint {} after failed attach: {}", Describe(request.key),
                     cleanup.ToString());
      }
    } else {
      PublishChange(request.key);
    }
    return status;
  }
  spdlog::info("{} endpoint {} (id {}, identity {}) on {} (ifindex {}){}",
               existing.has_value() ? "updated" : "created", Describe(stored->key),
               stored->endpoint_id, stored->identity, stored->host_interface_name,
               stored->host_ifindex,
               stored->identity == EBPFCNI_IDENTITY_UNKNOWN
                   ? "; no identity yet: its traffic is dropped until SetEndpointIdentity"
                   : "");
  PublishChange(stored->key);
  return StatusOf(*stored);
}

absl::StatusOr<bool> EndpointManager::DeleteEndpoint(const EndpointKey& key) {
  if (key.container_id.empty() || key.interface_name.empty()) {
    return absl::InvalidArgumentError("key.container_id and key.interface_name are required");
  }
  absl::MutexLock lock(&mutex_);
  std::optional<EndpointRecord> record = registry_->Find(key);
  if (!record.has_value()) return false;
  if (absl::Status status = Forget(*record); !status.ok()) return status;
  spdlog::info("deleted endpoint {} (id {})", Describe(key), record->endpoint_id);
  return true;
}

absl::StatusOr<EndpointStatus> EndpointManager::GetEndpoint(const EndpointKey& key) {
  absl::MutexLock lock(&mutex_);
  std::optional<EndpointRecord> record = registry_->Find(key);
  if (!record.has_value()) {
    return absl::NotFoundError(absl::StrCat("no endpoint ", Describe(key)));
  }
  return StatusOf(*record);
}

absl::StatusOr<std::vector<EndpointStatus>> EndpointManager::ListEndpoints() {
  absl::MutexLock lock(&mutex_);
  std::vector<EndpointStatus> list;
  for (const EndpointRecord& record : registry_->List()) {
    absl::StatusOr<EndpointStatus> status = StatusOf(record);
    if (!status.ok()) return status.status();
    list.push_back(*std::move(status));
  }
  return list;
}

absl::StatusOr<std::vector<EndpointKey>> EndpointManager::GarbageCollect(
    const std::vector<EndpointKey>& valid) {
  std::set<EndpointKey> keep(valid.begin(), valid.end());
  absl::MutexLock lock(&mutex_);
  std::vector<EndpointKey> deleted;
  for (const EndpointRecord& record : registry_->List()) {
    if (keep.contains(record.key)) continue;
    if (absl::Status status = Forget(record); !status.ok()) return status;
    spdlog::info("garbage-collected endpoint {} (id {})", Describe(record.key),
                 record.endpoint_id);
    deleted.push_back(record.key);
  }
  return deleted;
}

}  // namespace ebpfcni::datapath

namespace ebpfcni::datapath {

absl::StatusOr<EndpointStatus> EndpointManager::SetEndpointIdentity(const EndpointKey& key,
                                                                    uint32_t identity) {
  if (identity == EBPFCNI_IDENTITY_UNKNOWN) {
    return absl::InvalidArgumentError("identity must be non-zero");
  }
  absl::MutexLock lock(&mutex_);
  std::optional<EndpointRecord> record = registry_->Find(key);
  if (!record.has_value()) {
    return absl::NotFoundError(absl::StrCat("no endpoint ", Describe(key)));
  }
  record->identity = identity;
  absl::StatusOr<EndpointRecord> stored = registry_->Put(*record);
  if (!stored.ok()) return stored.status();
  if (absl::Status status = MapEndpointAddresses(*stored); !status.ok()) return status;
  // The endpoint map entry last: from here on the programs judge the pod as
  // `identity`, and its peers already see its addresses with it.
  if (InterfaceStillNamed(stored->host_ifindex, stored->host_interface_name)) {
    if (absl::Status status =
            bpf_->SetEndpointForIfindex(stored->host_ifindex, stored->endpoint_id, identity);
        !status.ok()) {
      return status;
    }
  }
  spdlog::info("endpoint {} (id {}) has identity {}", Describe(key), stored->endpoint_id,
               identity);
  PublishChange(key);
  return StatusOf(*stored);
}

absl::StatusOr<PolicySummary> EndpointManager::ReplaceEndpointPolicy(
    const EndpointKey& key, const std::optional<EndpointPolicy>& policy) {
  // A batch of one: the same swap, logging and bookkeeping as a big batch.
  std::vector<absl::StatusOr<PolicySummary>> results =
      ReplaceEndpointPolicies({PolicyReplacement{key, policy}});
  return std::move(results.front());
}

namespace {

std::string DescribePolicyChange(const std::optional<EndpointPolicy>& policy) {
  if (!policy.has_value()) return "removed (not isolated)";
  return absl::StrCat("replaced: ", policy->rules.size(), " rules, ingress ",
                      policy->ingress_isolated ? "isolated" : "open", ", egress ",
                      policy->egress_isolated ? "isolated" : "open");
}

}  // namespace

std::vector<absl::StatusOr<PolicySummary>> EndpointManager::ReplaceEndpointPolicies(
    const std::vector<PolicyReplacement>& items) {
  absl::MutexLock lock(&mutex_);
  std::vector<absl::StatusOr<PolicySummary>> results(items.size(), PolicySummary{});
  // Everything is checked before the kernel sees any of it.
  std::vector<PolicyMap::Update> updates;
  std::vector<size_t> update_items;  // index into `items` per update
  std::set<EndpointKey> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    const PolicyReplacement& item = items[i];
    if (!seen.insert(item.key).second) {
      results[i] = absl::InvalidArgumentError(
          absl::StrCat("endpoint ", Describe(item.key),
                       " appears more than once in the batch (at most one item per endpoint)"));
      continue;
    }
    std::optional<EndpointRecord> record = registry_->Find(item.key);
    if (!record.has_value()) {
      results[i] = absl::NotFoundError(absl::StrCat("no endpoint ", Describe(item.key)));
      continue;
    }
    updates.push_back(PolicyMap::Update{record->endpoint_id, item.policy});
    update_items.push_back(i);
  }
  // Whatever happens below, the cache must not claim a policy the kernel
  // may not have: forget it, refill on success.
  for (const PolicyMap::Update& update : updates) policy_summaries_.erase(update.endpoint_id);

  std::vector<absl::Status> swapped = policy_.ReplaceMany(updates);

  std::vector<std::pair<uint32_t, std::optional<EndpointPolicy>>> to_store;
  std::vector<size_t> applied;  // index into `updates`
  for (size_t u = 0; u < updates.size(); ++u) {
    const PolicyMap::Update& update = updates[u];
    const EndpointKey& key = items[update_items[u]].key;
    if (!swapped[u].ok()) {
      // Say whose policy did not fit or failed: the caller may be pushing
      // many endpoints.
      results[update_items[u]] = absl::Status(
          swapped[u].code(), absl::StrCat("endpoint ", Describe(key), " (id ", update.endpoint_id,
                                          "): ", swapped[u].message()));
      continue;
    }
    policy_summaries_[update.endpoint_id] = SummaryOf(update.policy);
    to_store.emplace_back(update.endpoint_id, update.policy);
    applied.push_back(u);
  }
  // The kernel has the new policies whatever the store says; a failed
  // commit is reported on each item it concerns (a restart would put the
  // old copies back).
  absl::Status stored = store_->SavePolicies(to_store);
  if (!stored.ok()) spdlog::error("saving policy copies: {}", stored.ToString());

  for (size_t u : applied) {
    const PolicyMap::Update& update = updates[u];
    const EndpointKey& key = items[update_items[u]].key;
    if (applied.size() == 1) {
      spdlog::info("endpoint {} (id {}): policy {}", Describe(key), update.endpoint_id,
                   DescribePolicyChange(update.policy));
    } else {
      spdlog::debug("endpoint {} (id {}): policy {}", Describe(key), update.endpoint_id,
                    DescribePolicyChange(update.policy));
    }
    PublishChange(key);
    if (!stored.ok()) {
      results[update_items[u]] = stored;
      continue;
    }
    // What was just installed plus its counters (kept for entries the old
    // policy had too), without reading the inner map back.
    PolicySummary summary = SummaryOf(update.policy);
    if (update.policy.has_value()) {
      absl::StatusOr<std::pair<uint64_t, uint64_t>> hits =
          policy_.RuleHits(update.endpoint_id, *update.policy);
      if (!hits.ok()) {
        results[update_items[u]] = hits.status();
        continue;
      }
      summary.rule_hit_packets = hits->first;
      summary.rule_hit_bytes = hits->second;
    }
    results[update_items[u]] = summary;
  }
  if (applied.size() > 1 || applied.size() != items.size()) {
    spdlog::info("policies replaced for {} of {} endpoints in one batch", applied.size(),
                 items.size());
  }
  return results;
}

absl::StatusOr<PolicyDump> EndpointManager::DumpPolicy(const EndpointKey& key) {
  absl::MutexLock lock(&mutex_);
  std::optional<EndpointRecord> record = registry_->Find(key);
  if (!record.has_value()) {
    return absl::NotFoundError(absl::StrCat("no endpoint ", Describe(key)));
  }
  PolicyDump dump;
  absl::StatusOr<PolicySummary> summary = SummarizePolicy(record->endpoint_id);
  if (!summary.ok()) return summary.status();
  dump.summary = *summary;
  absl::StatusOr<std::vector<PolicyEntryCounters>> entries =
      policy_.ReadCounters(record->endpoint_id);
  if (!entries.ok()) return entries.status();
  dump.entries = *std::move(entries);
  return dump;
}

absl::Status EndpointManager::UpsertPrefixIdentities(
    const std::vector<std::pair<IpPrefix, uint32_t>>& entries) {
  absl::MutexLock lock(&mutex_);
  for (const auto& [prefix, identity] : entries) {
    if (absl::Status status = ipcache_.Upsert(prefix, identity); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> EndpointManager::DeletePrefixIdentities(
    const std::vector<IpPrefix>& prefixes) {
  absl::MutexLock lock(&mutex_);
  uint32_t deleted = 0;
  for (const IpPrefix& prefix : prefixes) {
    absl::StatusOr<bool> existed = ipcache_.Delete(prefix);
    if (!existed.ok()) return existed.status();
    if (*existed) ++deleted;
  }
  return deleted;
}

absl::StatusOr<std::vector<std::pair<IpPrefix, uint32_t>>>
EndpointManager::ListPrefixIdentities() {
  absl::MutexLock lock(&mutex_);
  return ipcache_.List();
}

absl::StatusOr<std::vector<PacketCount>> EndpointManager::Metrics() {
  absl::MutexLock lock(&mutex_);
  return bpf_->ReadMetrics();
}

std::optional<EndpointKey> EndpointManager::KeyOfEndpointId(uint32_t endpoint_id) {
  absl::MutexLock lock(&mutex_);
  for (const EndpointRecord& record : registry_->List()) {
    if (record.endpoint_id == endpoint_id) return record.key;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<TraceHop>> EndpointManager::Trace(const TraceSpec& spec) {
  if (spec.source.is_v4() != spec.destination.is_v4()) {
    return absl::InvalidArgumentError(absl::StrCat("source ", spec.source.ToString(),
                                                   " and destination ",
                                                   spec.destination.ToString(),
                                                   " are of different IP families"));
  }
  PacketBuilder packet = [&] {
    switch (spec.protocol) {
      case kProtoTcp:
        return PacketBuilder::Tcp(spec.source, spec.destination, spec.source_port,
                                  spec.destination_port,
                                  spec.tcp_flags == 0 ? kTcpSyn : spec.tcp_flags);
      case kProtoUdp:
        return PacketBuilder::Udp(spec.source, spec.destination, spec.source_port,
                                  spec.destination_port);
      case kProtoSctp:
        return PacketBuilder::Sctp(spec.source, spec.destination, spec.source_port,
                                   spec.destination_port);
      case kProtoIcmp:
      case kProtoIcmpV6: {
        uint8_t echo_request = spec.source.is_v4() ? 8 : 128;
        uint8_t type = spec.destination_port == 0 ? echo_request
                                                  : static_cast<uint8_t>(spec.destination_port);
        return PacketBuilder::Icmp(spec.source, spec.destination, type, spec.source_port);
      }
      default:
        return PacketBuilder::Protocol(spec.source, spec.destination, spec.protocol);
    }
  }();
  std::vector<uint8_t> frame = packet.Payload(16).Build();

  absl::MutexLock lock(&mutex_);
  std::optional<EndpointRecord> source_endpoint;
  std::optional<EndpointRecord> destination_endpoint;
  for (const EndpointRecord& record : registry_->List()) {
    for (const IpAddress& address : AddressesOf(record)) {
      if (address == spec.source) source_endpoint = record;
      if (address == spec.destination) destination_endpoint = record;
    }
  }
  if (!source_endpoint.has_value() && !destination_endpoint.has_value()) {
    return absl::NotFoundError(absl::StrCat("neither ", spec.source.ToString(), " nor ",
                                            spec.destination.ToString(),
                                            " is the address of an endpoint on this node"));
  }
  std::vector<TraceHop> hops;
  for (bool from_pod : {true, false}) {
    const std::optional<EndpointRecord>& endpoint =
        from_pod ? source_endpoint : destination_endpoint;
    if (!endpoint.has_value()) continue;
    if (!InterfaceStillNamed(endpoint->host_ifindex, endpoint->host_interface_name)) {
      return absl::FailedPreconditionError(
          absl::StrCat("endpoint ", Describe(endpoint->key), " has lost its interface ",
                       endpoint->host_interface_name));
    }
    absl::StatusOr<TraceResult> result =
        TraceProgram(from_pod ? bpf_->from_container_fd() : bpf_->to_container_fd(),
                     endpoint->host_ifindex, frame);
    if (!result.ok()) return result.status();
    hops.push_back(TraceHop{endpoint->key, endpoint->endpoint_id, from_pod, *result});
  }
  return hops;
}

}  // namespace ebpfcni::datapath
