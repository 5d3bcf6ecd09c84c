#include "services/identity/etcd/etcd_identity_store.h"

#include <algorithm>
#include <chrono>
#include <random>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <spdlog/spdlog.h>

namespace ebpfcni::identity::etcd {
namespace {

// Bounds one AllocateOrGet: each failed attempt means another writer won a
// race (for the label set or the number), so this many in a row is a sign
// of something pathological rather than ordinary contention.
constexpr int kMaxAllocationAttempts = 200;
// After a lost race, the next try picks one of this many lowest free
// numbers at random, so replicas allocating at the same time stop
// colliding; the gaps left are filled by later (lowest-free) allocations.
constexpr uint32_t kRetrySpread = 32;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// Reads a labels/ key from a Txn's failure-branch Range.
EtcdIdentityStore::LabelsEntry EtcdIdentityStore::ParseLabelsEntry(const etcdserverpb::RangeResponse& range) {
  LabelsEntry entry;
  if (range.kvs_size() == 0) return entry;
  entry.exists = absl::SimpleAtoi(range.kvs(0).value(), &entry.id);
  entry.create_revision = range.kvs(0).create_revision();
  return entry;
}

EtcdIdentityStore::EtcdIdentityStore(EtcdIdentityStoreOptions options)
    : options_(std::move(options)), keys_(options_.prefix) {}

absl::StatusOr<std::unique_ptr<EtcdIdentityStore>> EtcdIdentityStore::Open(EtcdIdentityStoreOptions options) {
  if (options.first_id == 0 || options.first_id > options.last_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("identity range ", options.first_id, "-", options.last_id, " is empty"));
  }
  if (options.client.endpoints.empty()) return absl::InvalidArgumentError("no etcd endpoint given");
  if (options.prefix.empty() || options.prefix.back() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("etcd prefix \"", options.prefix, "\" must end with '/'"));
  }
  std::unique_ptr<EtcdIdentityStore> store(new EtcdIdentityStore(std::move(options)));
  if (auto status = store->Start(); !status.ok()) return status;
  return store;
}

absl::Status EtcdIdentityStore::Start() {
  client_ = std::make_unique<EtcdClient>(options_.client);
  auto lease = EtcdLease::Grant(*client_, options_.lease_ttl_seconds);
  if (!lease.ok()) return lease.status();
  lease_ = std::move(*lease);
  if (auto status = LoadSnapshot(); !status.ok()) return status;
  watch_thread_ = std::thread([this] { WatchLoop(); });
  // Serve only once the watch runs, so the first write can see itself.
  std::unique_lock<std::mutex> lock(mu_);
  if (!applied_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.cache_wait), [&] { return watch_live_; })) {
    return absl::UnavailableError(absl::StrCat("etcd at ", client_->endpoints_text(),
                                               " unreachable: the watch did not start: ", watch_error_));
  }
  return absl::OkStatus();
}

EtcdIdentityStore::~EtcdIdentityStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (watch_context_) watch_context_->TryCancel();
  }
  applied_cv_.notify_all();
  if (watch_thread_.joinable()) watch_thread_.join();
  lease_.reset();
}

// ---------------------------------------------------------------------------
// Cache: one Range of the prefix, then one Watch from the revision after it.

absl::Status EtcdIdentityStore::LoadSnapshot() {
  // Pages of kSnapshotPage keys, all read at the first page's revision, so
  // a large cluster's state never needs one huge message.
  constexpr int64_t kSnapshotPage = 5000;
  std::vector<mvccpb::KeyValue> kvs;
  int64_t revision = 0;
  std::string from = keys_.prefix();
  while (true) {
    etcdserverpb::RangeRequest request;
    request.set_key(from);
    request.set_range_end(PrefixEnd(keys_.prefix()));
    request.set_limit(kSnapshotPage);
    request.set_revision(revision);
    auto range = client_->Range(request);
    if (!range.ok()) return range.status();
    if (revision == 0) revision = range->header().revision();
    for (auto& kv : *range->mutable_kvs()) kvs.push_back(std::move(kv));
    if (!range->more() || kvs.empty()) break;
    from = kvs.back().key() + std::string(1, '\0');  // the next key after the last one read
  }
  std::lock_guard<std::mutex> lock(mu_);
  by_id_.clear();
  by_labels_.clear();
  ref_counts_.clear();
  markers_.clear();
  change_log_.clear();
  node_leases_.clear();
  ipcache_.clear();
  ipcache_log_.clear();
  for (auto& kv : kvs) {
    mvccpb::Event event;
    *event.mutable_kv() = std::move(kv);
    ApplyEventLocked(event, /*from_snapshot=*/true);
  }
  // The log restarts here; older revisions are read from etcd's history.
  change_log_.clear();
  ipcache_log_.clear();
  applied_revision_ = revision;
  history_start_ = applied_revision_;
  older_from_ = history_start_;
  older_changes_.clear();
  older_ipcache_changes_.clear();
  applied_cv_.notify_all();
  return absl::OkStatus();
}

void EtcdIdentityStore::RecordChangeLocked(IdentityChange change) {
  change_log_.push_back(std::move(change));
  TrimLogsLocked();
}

void EtcdIdentityStore::TrimLogsLocked() {
  // Both logs start at the same revision (history_start_), so dropping the
  // oldest entry of one drops everything up to it from the other too.
  while (change_log_.size() + ipcache_log_.size() > options_.change_log_limit) {
    uint64_t oldest = UINT64_MAX;
    if (!change_log_.empty()) oldest = change_log_.front().revision;
    if (!ipcache_log_.empty()) oldest = std::min(oldest, ipcache_log_.front().revision);
    history_start_ = static_cast<int64_t>(oldest);
    while (!change_log_.empty() && change_log_.front().revision <= oldest) change_log_.pop_front();
    while (!ipcache_log_.empty() && ipcache_log_.front().revision <= oldest) ipcache_log_.pop_front();
    older_from_ = history_start_;
    older_changes_.clear();
    older_ipcache_changes_.clear();
  }
}

void EtcdIdentityStore::ApplyEventLocked(const mvccpb::Event& event, bool from_snapshot) {
  const auto& kv = event.kv();
  auto parsed = keys_.Parse(kv.key());
  const bool put = event.type() == mvccpb::Event::PUT;
  const auto revision = static_cast<uint64_t>(kv.mod_revision());
  switch (parsed.kind) {
    case KeyLayout::Kind::kIdentity:
      if (put) {
        auto& cached = by_id_[parsed.id];
        if (!cached.labels_key.empty()) by_labels_.erase(cached.labels_key);
        cached = CachedIdentity{kv.value(), kv.create_revision()};
        by_labels_[kv.value()] = parsed.id;
        RecordChangeLocked({revision, ChangeKind::kUpsert, {parsed.id, kv.value()}});
      } else if (auto it = by_id_.find(parsed.id); it != by_id_.end()) {
        RecordChangeLocked({revision, ChangeKind::kDelete, {parsed.id, it->second.labels_key}});
        by_labels_.erase(it->second.labels_key);
        by_id_.erase(it);
        ref_counts_.erase(parsed.id);
      }
      break;
    case KeyLayout::Kind::kRef:
      // version 1 is a new key; a later put (another replica taking over
      // the reference onto its lease) changes no count.
      if (put && (from_snapshot || kv.version() == 1)) {
        ++ref_counts_[parsed.id];
      } else if (!put) {
        auto it = ref_counts_.find(parsed.id);
        if (it != ref_counts_.end() && --it->second == 0) ref_counts_.erase(it);
      }
      break;
    case KeyLayout::Kind::kMarker:
      if (put) {
        int64_t since = 0;
        if (!absl::SimpleAtoi(kv.value(), &since)) since = 0;
        markers_[parsed.id] = Marker{since, kv.mod_revision()};
      } else {
        markers_.erase(parsed.id);
      }
      break;
    case KeyLayout::Kind::kNode:
      if (put) {
        int64_t lease = 0;
        if (absl::SimpleAtoi(kv.value(), &lease)) node_leases_[parsed.name] = lease;
      } else {
        node_leases_.erase(parsed.name);
      }
      break;
    case KeyLayout::Kind::kIpCache:
      if (put) {
        std::vector<std::string> parts = absl::StrSplit(kv.value(), absl::MaxSplits(' ', 1));
        IpCacheRecord record{parsed.name, 0, parts.size() > 1 ? parts[1] : ""};
        if (!absl::SimpleAtoi(parts[0], &record.identity)) record.identity = 0;
        ipcache_[parsed.name] = CachedIpCacheEntry{record, kv.lease()};
        ipcache_log_.push_back({revision, ChangeKind::kUpsert, record});
        TrimLogsLocked();
      } else if (auto it = ipcache_.find(parsed.name); it != ipcache_.end()) {
        ipcache_log_.push_back({revision, ChangeKind::kDelete, it->second.record});
        ipcache_.erase(it);
        TrimLogsLocked();
      }
      break;
    case KeyLayout::Kind::kLabels:
    case KeyLayout::Kind::kOther:
      break;  // labels/ mirrors id/, which the cache already follows
  }
}

void EtcdIdentityStore::RunWatchStream() {
  grpc::ClientContext context;
  int64_t start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    watch_context_ = &context;
    start = applied_revision_ + 1;
  }
  auto stream = client_->watch_stub().Watch(&context);
  etcdserverpb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(keys_.prefix());
  create->set_range_end(PrefixEnd(keys_.prefix()));
  create->set_start_revision(start);
  std::string error;
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    while (stream->Read(&response)) {
      if (response.compact_revision() > 0) {
        spdlog::warn("etcd compacted revision {} (now {}) before this replica caught up; reloading the cache",
                     start, response.compact_revision());
        std::lock_guard<std::mutex> lock(mu_);
        needs_reload_ = true;
        break;
      }
      if (response.canceled()) {
        error = absl::StrCat("etcd cancelled the watch: ", response.cancel_reason());
        break;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (response.created()) {
          watch_live_ = true;
          spdlog::info("watching {} on etcd from revision {}", keys_.prefix(), start);
        }
        for (const auto& event : response.events()) {
          ApplyEventLocked(event, /*from_snapshot=*/false);
          applied_revision_ = std::max(applied_revision_, event.kv().mod_revision());
        }
        applied_cv_.notify_all();
      }
      // Wake the service's watchers now, whoever wrote the change.
      if (response.events_size() > 0) listener_.Notify();
    }
  }
  context.TryCancel();
  grpc::Status status = stream->Finish();
  std::lock_guard<std::mutex> lock(mu_);
  watch_context_ = nullptr;
  watch_live_ = false;
  if (error.empty()) error = status.ok() ? "stream ended" : status.error_message();
  watch_error_ = error;
  if (!stopping_) spdlog::warn("etcd watch on {} broke: {}; resuming", keys_.prefix(), error);
  applied_cv_.notify_all();
}

void EtcdIdentityStore::WatchLoop() {
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    bool reload;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      reload = needs_reload_;
    }
    absl::Status loaded = reload ? LoadSnapshot() : absl::OkStatus();
    if (reload && loaded.ok()) listener_.Notify();
    if (loaded.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        needs_reload_ = false;
      }
      auto started = std::chrono::steady_clock::now();
      RunWatchStream();
      // A stream that ran a while was healthy: retry soon.
      if (std::chrono::steady_clock::now() - started > std::chrono::seconds(5)) {
        backoff = std::chrono::milliseconds(100);
      }
    } else {
      std::lock_guard<std::mutex> lock(mu_);
      watch_error_ = loaded.ToString();
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (applied_cv_.wait_for(lock, backoff, [&] { return stopping_; })) return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

// ---------------------------------------------------------------------------
// Callers.

absl::Status EtcdIdentityStore::CheckServingLocked() const {
  if (!watch_live_) {
    return absl::UnavailableError(absl::StrCat("etcd at ", client_->endpoints_text(),
                                               " unreachable: identity cache is not following etcd (",
                                               watch_error_, "); retry shortly or use another replica"));
  }
  return absl::OkStatus();
}

absl::Status EtcdIdentityStore::CheckServing() {
  std::lock_guard<std::mutex> lock(mu_);
  return CheckServingLocked();
}

absl::Status EtcdIdentityStore::WaitForRevision(int64_t revision) {
  std::unique_lock<std::mutex> lock(mu_);
  if (applied_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.cache_wait),
                           [&] { return applied_revision_ >= revision || stopping_; }) &&
      applied_revision_ >= revision) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("etcd at ", client_->endpoints_text(),
                                             " accepted the write but its watch did not deliver revision ",
                                             revision, " within ", absl::FormatDuration(options_.cache_wait),
                                             " (", watch_error_, "); retrying is safe"));
}

std::optional<uint32_t> EtcdIdentityStore::FreeIdLocked(const std::set<uint32_t>& skip, uint32_t pass_over) const {
  uint64_t candidate = options_.first_id;
  std::optional<uint32_t> last_free;
  auto taken = [&](uint64_t id) {
    auto narrow = static_cast<uint32_t>(id);
    return by_id_.count(narrow) || in_flight_.count(narrow) || skip.count(narrow);
  };
  // Walks up from `first` (by_id_ is ordered, so this is O(identities));
  // in_flight_ and skip are small.
  for (;; ++candidate) {
    while (candidate <= options_.last_id && taken(candidate)) ++candidate;
    if (candidate > options_.last_id) return last_free;
    last_free = static_cast<uint32_t>(candidate);
    if (pass_over-- == 0) return last_free;
  }
}

absl::Status EtcdIdentityStore::ExhaustedError() const {
  spdlog::error("identity range {}-{} exhausted", options_.first_id, options_.last_id);
  return absl::ResourceExhaustedError(absl::StrCat("identity range ", options_.first_id, "-", options_.last_id,
                                                   " is exhausted; release unused identities or widen the range"));
}

absl::StatusOr<std::optional<AllocationResult>> EtcdIdentityStore::TryReference(const std::string& labels_key,
                                                                               LabelsEntry known,
                                                                               const std::string& owner,
                                                                               LabelsEntry& current) {
  const uint32_t id = known.id;
  const std::string node = NodeOfOwner(owner);
  bool created = false;
  auto lease = NodeLease(node, options_.node_ttl_seconds, created);
  if (!lease.ok()) return lease.status();
  etcdserverpb::TxnRequest txn;
  // The label set still maps to the identity we know (not deleted by GC
  // and recreated in between).
  *txn.add_compare() = CompareCreateRevision(keys_.LabelsKey(labels_key), etcdserverpb::Compare::EQUAL,
                                               known.create_revision);
  *txn.add_success() = PutOp(keys_.RefKey(id, owner), "", *lease);
  *txn.add_success() = DeleteOp(keys_.MarkerKey(id));
  *txn.add_failure() = RangeOp(keys_.LabelsKey(labels_key));
  auto response = client_->Txn(txn);
  if (absl::IsNotFound(response.status())) {
    // The node's lease expired under us: the next attempt starts a session.
    ForgetNodeLease(node, *lease);
    current = known;
    return std::nullopt;
  }
  if (!response.ok()) return response.status();
  if (!response->succeeded()) {
    current = ParseLabelsEntry(response->responses(0).response_range());
    return std::nullopt;
  }
  if (auto status = WaitForRevision(response->header().revision()); !status.ok()) return status;
  return AllocationResult{{id, labels_key}, false};
}

absl::StatusOr<AllocationResult> EtcdIdentityStore::AllocateOrGet(const std::string& labels_key,
                                                                 const std::string& owner) {
  LabelsEntry known;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto status = CheckServingLocked(); !status.ok()) return status;
    if (auto it = by_labels_.find(labels_key); it != by_labels_.end()) {
      known = LabelsEntry{true, it->second, by_id_.at(it->second).create_revision};
    }
  }
  std::set<uint32_t> lost;  // numbers other writers took during this call
  std::minstd_rand random(std::hash<std::string>()(labels_key) ^ static_cast<size_t>(NowMs()));
  for (int attempt = 0; attempt < kMaxAllocationAttempts; ++attempt) {
    if (known.exists) {
      LabelsEntry current;
      auto referenced = TryReference(labels_key, known, owner, current);
      if (!referenced.ok()) return referenced.status();
      if (*referenced) return **referenced;
      known = current;  // deleted (nullopt) or recreated under another id
      continue;
    }
    const std::string node = NodeOfOwner(owner);
    bool created = false;
    auto lease = NodeLease(node, options_.node_ttl_seconds, created);
    if (!lease.ok()) return lease.status();
    uint32_t candidate;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Uncontended, the lowest free number. After losing a race, other
      // replicas are allocating too and would all go for the next number:
      // spread the retries over the next few free ones instead.
      auto free = FreeIdLocked(lost, lost.empty() ? 0 : random() % kRetrySpread);
      if (!free) return ExhaustedError();
      candidate = *free;
      in_flight_.insert(candidate);
    }
    etcdserverpb::TxnRequest txn;
    *txn.add_compare() = CompareCreateRevision(keys_.LabelsKey(labels_key), etcdserverpb::Compare::EQUAL, 0);
    *txn.add_compare() = CompareCreateRevision(keys_.IdKey(candidate), etcdserverpb::Compare::EQUAL, 0);
    *txn.add_success() = PutOp(keys_.IdKey(candidate), labels_key);
    *txn.add_success() = PutOp(keys_.LabelsKey(labels_key), std::to_string(candidate));
    *txn.add_success() = PutOp(keys_.RefKey(candidate, owner), "", *lease);
    *txn.add_success() = DeleteOp(keys_.MarkerKey(candidate));
    *txn.add_failure() = RangeOp(keys_.LabelsKey(labels_key));
    auto response = client_->Txn(txn);
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_.erase(candidate);
    }
    if (absl::IsNotFound(response.status())) {
      ForgetNodeLease(node, *lease);  // expired under us; try again with a new session
      continue;
    }
    if (!response.ok()) return response.status();
    if (response->succeeded()) {
      if (auto status = WaitForRevision(response->header().revision()); !status.ok()) return status;
      return AllocationResult{{candidate, labels_key}, true};
    }
    known = ParseLabelsEntry(response->responses(0).response_range());
    if (!known.exists) {
      lost.insert(candidate);  // the label set is free, the number was not
      spdlog::debug("identity {} was taken by another writer; retrying {}", candidate, labels_key);
    }
  }
  return absl::AbortedError(absl::StrCat("could not allocate an identity for ", labels_key, " after ",
                                         kMaxAllocationAttempts, " contended attempts; retry"));
}

absl::StatusOr<uint32_t> EtcdIdentityStore::Release(uint32_t id, const std::string& owner) {
  if (auto status = CheckServing(); !status.ok()) return status;
  etcdserverpb::TxnRequest txn;
  *txn.add_compare() = CompareCreateRevision(keys_.IdKey(id), etcdserverpb::Compare::GREATER, 0);
  *txn.add_success() = DeleteOp(keys_.RefKey(id, owner));
  *txn.add_success() = CountPrefixOp(keys_.RefsPrefix(id));
  auto response = client_->Txn(txn);
  if (!response.ok()) return response.status();
  if (!response->succeeded()) return absl::NotFoundError(absl::StrCat("identity ", id, " does not exist"));
  bool changed = response->responses(0).response_delete_range().deleted() > 0;
  auto remaining = static_cast<uint32_t>(response->responses(1).response_range().count());
  int64_t revision = response->header().revision();
  if (remaining == 0) {
    // Start the grace period, unless another writer referenced it again or
    // a marker is already there.
    etcdserverpb::TxnRequest mark;
    *mark.add_compare() = CompareCreateRevision(keys_.IdKey(id), etcdserverpb::Compare::GREATER, 0);
    *mark.add_compare() = CompareCreateRevision(keys_.MarkerKey(id), etcdserverpb::Compare::EQUAL, 0);
    *mark.add_compare() = CompareNoKeyWithPrefix(keys_.RefsPrefix(id));
    *mark.add_success() = PutOp(keys_.MarkerKey(id), std::to_string(NowMs()));
    auto marked = client_->Txn(mark);
    if (!marked.ok()) return marked.status();
    if (marked->succeeded()) {
      changed = true;
      revision = marked->header().revision();
    }
  }
  if (changed) {
    if (auto status = WaitForRevision(revision); !status.ok()) return status;
  }
  return remaining;
}

absl::StatusOr<std::optional<StoredIdentity>> EtcdIdentityStore::Get(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto status = CheckServingLocked(); !status.ok()) return status;
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return StoredIdentity{id, it->second.labels_key};
}

absl::StatusOr<std::optional<StoredIdentity>> EtcdIdentityStore::Lookup(const std::string& labels_key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto status = CheckServingLocked(); !status.ok()) return status;
  auto it = by_labels_.find(labels_key);
  if (it == by_labels_.end()) return std::nullopt;
  return StoredIdentity{it->second, labels_key};
}

absl::StatusOr<IdentitySnapshot> EtcdIdentityStore::List() {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto status = CheckServingLocked(); !status.ok()) return status;
  IdentitySnapshot snapshot;
  snapshot.identities.reserve(by_id_.size());
  for (const auto& [id, cached] : by_id_) snapshot.identities.push_back({id, cached.labels_key});
  snapshot.revision = static_cast<uint64_t>(applied_revision_);
  return snapshot;
}

template <typename Change>
absl::StatusOr<std::vector<Change>> EtcdIdentityStore::ChangesSinceImpl(uint64_t revision,
                                                                       std::deque<Change> EtcdIdentityStore::*log,
                                                                       std::vector<Change> EtcdIdentityStore::*older,
                                                                       std::vector<Change> History::*from_history) {
  // Changes after `revision` from a list ordered by revision.
  auto after = [revision](const auto& changes, std::vector<Change>& out) {
    auto first = std::upper_bound(changes.begin(), changes.end(), revision,
                                  [](uint64_t r, const Change& change) { return r < change.revision; });
    out.insert(out.end(), first, changes.end());
  };
  int64_t cache_start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto status = CheckServingLocked(); !status.ok()) return status;
    if (revision >= static_cast<uint64_t>(older_from_)) {
      std::vector<Change> changes;
      if (revision < static_cast<uint64_t>(history_start_)) after(this->*older, changes);
      after(this->*log, changes);
      return changes;
    }
    cache_start = history_start_;
  }
  // Older than this cache: etcd still has the history unless compacted.
  auto history = HistoryFromEtcd(revision, cache_start);
  if (!history.ok()) return history.status();
  std::lock_guard<std::mutex> lock(mu_);
  if (history_start_ != cache_start) {
    return absl::UnavailableError("the identity cache reloaded while reading etcd history; retry");
  }
  if (revision < static_cast<uint64_t>(older_from_)) {
    older_from_ = static_cast<int64_t>(revision);
    older_changes_ = history->identities;
    older_ipcache_changes_ = history->ipcache;
  }
  std::vector<Change> changes = std::move((*history).*from_history);
  after(this->*log, changes);
  return changes;
}

absl::StatusOr<std::vector<IdentityChange>> EtcdIdentityStore::ChangesSince(uint64_t revision) {
  return ChangesSinceImpl(revision, &EtcdIdentityStore::change_log_, &EtcdIdentityStore::older_changes_,
                          &History::identities);
}

absl::StatusOr<std::vector<IpCacheChange>> EtcdIdentityStore::IpCacheChangesSince(uint64_t revision) {
  return ChangesSinceImpl(revision, &EtcdIdentityStore::ipcache_log_, &EtcdIdentityStore::older_ipcache_changes_,
                          &History::ipcache);
}

absl::StatusOr<EtcdIdentityStore::History> EtcdIdentityStore::HistoryFromEtcd(uint64_t after, int64_t until) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + client_->request_timeout());
  auto stream = client_->watch_stub().Watch(&context);
  etcdserverpb::WatchRequest create;
  create.mutable_create_request()->set_key(keys_.prefix());
  create.mutable_create_request()->set_range_end(PrefixEnd(keys_.prefix()));
  create.mutable_create_request()->set_start_revision(static_cast<int64_t>(after) + 1);
  // Deleted identities' labels come from the deleted key's last value.
  create.mutable_create_request()->set_prev_kv(true);
  History changes;
  absl::Status failure;
  bool complete = false;
  if (stream->Write(create)) {
    etcdserverpb::WatchResponse response;
    while (!complete && failure.ok() && stream->Read(&response)) {
      if (response.compact_revision() > 0) {
        failure = absl::OutOfRangeError(absl::StrCat("revision ", after, " was compacted by etcd (history now starts at ",
                                                     response.compact_revision(), "); restart the watch from a snapshot"));
        break;
      }
      if (response.canceled()) {
        failure = absl::UnavailableError(absl::StrCat("etcd cancelled the history watch: ", response.cancel_reason()));
        break;
      }
      for (const auto& event : response.events()) {
        if (event.kv().mod_revision() > until) {
          complete = true;
          break;
        }
        auto parsed = keys_.Parse(event.kv().key());
        bool put = event.type() == mvccpb::Event::PUT;
        const auto revision = static_cast<uint64_t>(event.kv().mod_revision());
        const auto kind = put ? ChangeKind::kUpsert : ChangeKind::kDelete;
        // A deletion's content comes from the deleted key's last value.
        const std::string& value = put ? event.kv().value() : event.prev_kv().value();
        if (parsed.kind == KeyLayout::Kind::kIdentity) {
          changes.identities.push_back({revision, kind, {parsed.id, value}});
        } else if (parsed.kind == KeyLayout::Kind::kIpCache) {
          std::vector<std::string> parts = absl::StrSplit(value, absl::MaxSplits(' ', 1));
          IpCacheRecord record{parsed.name, 0, parts.size() > 1 ? parts[1] : ""};
          if (!absl::SimpleAtoi(parts[0], &record.identity)) record.identity = 0;
          changes.ipcache.push_back({revision, kind, std::move(record)});
        }
      }
      if (response.created()) {
        // Events arrive in revision order, so one past `until` proves the
        // history before it complete. Write one (a fence key the caches
        // ignore, on our lease) rather than rely on progress requests,
        // which etcd 3.4 may answer before it has sent older events.
        etcdserverpb::PutRequest fence;
        fence.set_key(keys_.prefix() + "fence/" + std::to_string(lease_->id()));
        fence.set_value(std::to_string(NowMs()));
        fence.set_lease(lease_->id());
        auto put = client_->Put(fence);
        if (!put.ok()) failure = put.status();
      }
    }
  }
  context.TryCancel();
  grpc::Status status = stream->Finish();
  if (!failure.ok()) return failure;
  if (!complete) {
    return client_->CallError("Watch (history)", status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended early") : status);
  }
  return changes;
}

absl::StatusOr<std::vector<uint32_t>> EtcdIdentityStore::CollectGarbage(absl::Duration grace) {
  struct Candidate {
    uint32_t id;
    std::string labels_key;
    int64_t create_revision;
    std::optional<Marker> marker;
  };
  std::vector<Candidate> candidates;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto status = CheckServingLocked(); !status.ok()) return status;
    for (const auto& [id, cached] : by_id_) {
      if (ref_counts_.count(id)) continue;
      std::optional<Marker> marker;
      if (auto it = markers_.find(id); it != markers_.end()) marker = it->second;
      candidates.push_back({id, cached.labels_key, cached.create_revision, marker});
    }
  }
  const int64_t now = NowMs();
  const int64_t cutoff = now - absl::ToInt64Milliseconds(grace);
  std::vector<uint32_t> deleted;
  int64_t last_revision = 0;
  for (auto& candidate : candidates) {
    if (!candidate.marker) {
      // References that expired with a lease leave no marker: the grace
      // period starts when a collector first sees the identity unreferenced.
      etcdserverpb::TxnRequest mark;
      *mark.add_compare() = CompareCreateRevision(keys_.IdKey(candidate.id), etcdserverpb::Compare::EQUAL,
                                                  candidate.create_revision);
      *mark.add_compare() = CompareCreateRevision(keys_.MarkerKey(candidate.id), etcdserverpb::Compare::EQUAL, 0);
      *mark.add_compare() = CompareNoKeyWithPrefix(keys_.RefsPrefix(candidate.id));
      *mark.add_success() = PutOp(keys_.MarkerKey(candidate.id), std::to_string(now));
      auto marked = client_->Txn(mark);
      if (!marked.ok()) return marked.status();
      if (!marked->succeeded()) continue;
      last_revision = marked->header().revision();
      candidate.marker = Marker{now, last_revision};
    }
    if (candidate.marker->since_ms > cutoff) continue;
    // Delete only if etcd still agrees: same identity, same marker, and no
    // reference added since the cache looked.
    etcdserverpb::TxnRequest del;
    *del.add_compare() = CompareCreateRevision(keys_.IdKey(candidate.id), etcdserverpb::Compare::EQUAL,
                                               candidate.create_revision);
    *del.add_compare() = CompareModRevision(keys_.MarkerKey(candidate.id), candidate.marker->mod_revision);
    *del.add_compare() = CompareNoKeyWithPrefix(keys_.RefsPrefix(candidate.id));
    *del.add_success() = DeleteOp(keys_.IdKey(candidate.id));
    *del.add_success() = DeleteOp(keys_.LabelsKey(candidate.labels_key));
    *del.add_success() = DeleteOp(keys_.MarkerKey(candidate.id));
    auto response = client_->Txn(del);
    if (!response.ok()) return response.status();
    if (!response->succeeded()) continue;
    last_revision = response->header().revision();
    deleted.push_back(candidate.id);
    spdlog::info("garbage-collected identity {} ({})", candidate.id, candidate.labels_key);
  }
  if (last_revision > 0) {
    if (auto status = WaitForRevision(last_revision); !status.ok()) return status;
  }
  return deleted;
}

uint32_t EtcdIdentityStore::CachedReferenceCount(uint32_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ref_counts_.find(id);
  return it == ref_counts_.end() ? 0 : it->second;
}

}  // namespace ebpfcni::identity::etcd

namespace ebpfcni::identity::etcd {

// ---------------------------------------------------------------------------
// Node liveness: one lease per node, named by nodes/<node>.

int64_t EtcdIdentityStore::CachedNodeLease(const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = node_leases_.find(node);
  return it == node_leases_.end() ? 0 : it->second;
}

void EtcdIdentityStore::ForgetNodeLease(const std::string& node, int64_t lease) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = node_leases_.find(node);
  if (it != node_leases_.end() && it->second == lease) node_leases_.erase(it);
}

absl::StatusOr<int64_t> EtcdIdentityStore::NodeLease(const std::string& node, int64_t ttl_seconds, bool& created) {
  created = false;
  if (node.empty()) return absl::InvalidArgumentError("a node name is required");
  // Bounded: each round either finds a session or loses a race to another
  // replica creating one (whose lease the next round then finds).
  for (int attempt = 0; attempt < 5; ++attempt) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto status = CheckServingLocked(); !status.ok()) return status;
      if (auto it = node_leases_.find(node); it != node_leases_.end()) return it->second;
    }
    auto granted = client_->LeaseGrant(ttl_seconds);
    if (!granted.ok()) return granted.status();
    const int64_t lease = granted->id();
    // The session key is on its own lease: when the node goes silent, its
    // session, references and ipcache entries vanish together.
    etcdserverpb::TxnRequest txn;
    *txn.add_compare() = CompareCreateRevision(keys_.NodeKey(node), etcdserverpb::Compare::EQUAL, 0);
    *txn.add_success() = PutOp(keys_.NodeKey(node), std::to_string(lease), lease);
    *txn.add_failure() = RangeOp(keys_.NodeKey(node));
    auto response = client_->Txn(txn);
    if (!response.ok() || !response->succeeded()) {
      // Another replica made the session first (or the call failed): ours
      // must not linger until its TTL.
      client_->LeaseRevoke(lease).IgnoreError();
    }
    if (!response.ok()) return response.status();
    if (response->succeeded()) {
      if (auto status = WaitForRevision(response->header().revision()); !status.ok()) return status;
      spdlog::info("node {} started a liveness session (etcd lease {:x}, TTL {}s)", node, lease, granted->ttl());
      created = true;
      return lease;
    }
    const auto& range = response->responses(0).response_range();
    int64_t existing = 0;
    if (range.kvs_size() > 0 && absl::SimpleAtoi(range.kvs(0).value(), &existing)) {
      if (auto status = WaitForRevision(range.kvs(0).mod_revision()); !status.ok()) return status;
      return existing;
    }
  }
  return absl::AbortedError(absl::StrCat("could not establish a liveness session for node ", node,
                                         " (contended); retry"));
}

absl::StatusOr<HeartbeatResult> EtcdIdentityStore::NodeHeartbeat(const std::string& node, absl::Duration ttl) {
  int64_t ttl_seconds = ttl > absl::ZeroDuration() ? absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))
                                                   : options_.node_ttl_seconds;
  ttl_seconds = std::max<int64_t>(ttl_seconds, 2);  // etcd's minimum lease TTL
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool created = false;
    auto lease = NodeLease(node, ttl_seconds, created);
    if (!lease.ok()) return lease.status();
    if (created) return HeartbeatResult{true, absl::Seconds(ttl_seconds)};
    auto remaining = client_->LeaseKeepAliveOnce(*lease);
    if (!remaining.ok()) return remaining.status();
    if (*remaining > 0) return HeartbeatResult{false, absl::Seconds(*remaining)};
    // Expired before this heartbeat: its keys are gone with it; start anew.
    spdlog::warn("node {}'s session (etcd lease {:x}) had expired; starting a new one", node, *lease);
    ForgetNodeLease(node, *lease);
  }
  return absl::UnavailableError(absl::StrCat("node ", node, "'s etcd lease keeps expiring; retry"));
}

// ---------------------------------------------------------------------------
// ipcache: ipcache/<prefix> -> "<identity> <node>", on the node's lease.

absl::StatusOr<uint64_t> EtcdIdentityStore::UpsertIpCacheEntry(const IpCacheRecord& entry) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool created = false;
    auto lease = NodeLease(entry.node, options_.node_ttl_seconds, created);
    if (!lease.ok()) return lease.status();
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = ipcache_.find(entry.prefix);
      if (it != ipcache_.end() && it->second.record == entry && it->second.lease == *lease) {
        return static_cast<uint64_t>(applied_revision_);  // unchanged: no new revision
      }
    }
    etcdserverpb::PutRequest put;
    put.set_key(keys_.IpCacheKey(entry.prefix));
    put.set_value(absl::StrCat(entry.identity, " ", entry.node));
    put.set_lease(*lease);
    auto response = client_->Put(put);
    if (absl::IsNotFound(response.status())) {
      ForgetNodeLease(entry.node, *lease);
      continue;
    }
    if (!response.ok()) return response.status();
    if (auto status = WaitForRevision(response->header().revision()); !status.ok()) return status;
    return static_cast<uint64_t>(response->header().revision());
  }
  return absl::UnavailableError(absl::StrCat("node ", entry.node, "'s etcd lease keeps expiring; retry"));
}

absl::StatusOr<bool> EtcdIdentityStore::DeleteIpCacheEntry(const std::string& prefix, const std::string& node) {
  if (auto status = CheckServing(); !status.ok()) return status;
  // A node without a session owns nothing; with one, exactly the entries
  // on its lease.
  const int64_t lease = CachedNodeLease(node);
  if (lease == 0) return false;
  etcdserverpb::TxnRequest txn;
  *txn.add_compare() = CompareLease(keys_.IpCacheKey(prefix), lease);
  *txn.add_success() = DeleteOp(keys_.IpCacheKey(prefix));
  auto response = client_->Txn(txn);
  if (!response.ok()) return response.status();
  if (!response->succeeded() || response->responses(0).response_delete_range().deleted() == 0) return false;
  if (auto status = WaitForRevision(response->header().revision()); !status.ok()) return status;
  return true;
}

absl::StatusOr<IpCacheSnapshot> EtcdIdentityStore::ListIpCache() {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto status = CheckServingLocked(); !status.ok()) return status;
  IpCacheSnapshot snapshot;
  snapshot.entries.reserve(ipcache_.size());
  for (const auto& [prefix, cached] : ipcache_) snapshot.entries.push_back(cached.record);
  snapshot.revision = static_cast<uint64_t>(applied_revision_);
  return snapshot;
}

}  // namespace ebpfcni::identity::etcd
