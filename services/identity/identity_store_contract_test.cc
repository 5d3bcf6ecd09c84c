// The contract every IdentityStore backend keeps. Each backend registers a
// factory below; the etcd backend joins the same suite.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "services/identity/etcd/etcd_identity_store.h"
#include "services/identity/etcd/testing/etcd_test_server.h"
#include "services/identity/sqlite_identity_store.h"

namespace ebpfcni::identity {
namespace {

struct Backend {
  std::string name;
  // Creates a store over `dir` with ids [first, last]; calling it again on
  // the same dir must reopen the same data.
  std::function<std::unique_ptr<IdentityStore>(const std::string& dir, uint32_t first, uint32_t last)> open;
};

class IdentityStoreContract : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    // Parameterised test names contain '/' ("Name/sqlite"): flatten it so
    // the directory is one level and TearDown removes all of it.
    std::string test_name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(test_name.begin(), test_name.end(), '/', '_');
    dir_ = std::filesystem::temp_directory_path() / ("ebpfcni-idstore-" + std::to_string(getpid()) + "-" + test_name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<IdentityStore> Open(uint32_t first = 256, uint32_t last = 65535) {
    return GetParam().open(dir_.string(), first, last);
  }
  std::filesystem::path dir_;
};

TEST_P(IdentityStoreContract, SameLabelsSameIdDifferentLabelsDifferentId) {
  auto store = Open();
  auto a = store->AllocateOrGet("k8s:app=a", "n1/e1");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->newly_allocated);
  EXPECT_EQ(a->identity.id, 256u);
  auto again = store->AllocateOrGet("k8s:app=a", "n1/e2");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->newly_allocated);
  EXPECT_EQ(again->identity.id, a->identity.id);
  auto b = store->AllocateOrGet("k8s:app=b", "n1/e3");
  ASSERT_TRUE(b.ok());
  EXPECT_NE(b->identity.id, a->identity.id);
}

TEST_P(IdentityStoreContract, ReferencesCountOncePerOwner) {
  auto store = Open();
  auto a = store->AllocateOrGet("k8s:app=a", "n1/e1");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(store->AllocateOrGet("k8s:app=a", "n1/e1").ok());
  ASSERT_TRUE(store->AllocateOrGet("k8s:app=a", "n2/e1").ok());
  auto left = store->Release(a->identity.id, "n1/e1");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 1u);
  left = store->Release(a->identity.id, "n1/e1");  // releasing twice changes nothing
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 1u);
  EXPECT_EQ(store->Release(999, "n1/e1").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(IdentityStoreContract, GarbageCollectionSparesReferencedIdentities) {
  auto store = Open();
  auto kept = store->AllocateOrGet("k8s:app=kept", "n1/e1");
  auto gone = store->AllocateOrGet("k8s:app=gone", "n1/e2");
  ASSERT_TRUE(kept.ok() && gone.ok());
  ASSERT_TRUE(store->Release(gone->identity.id, "n1/e2").ok());
  // Within the grace period nothing is deleted.
  auto deleted = store->CollectGarbage(absl::Hours(1));
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(deleted->empty());
  deleted = store->CollectGarbage(absl::ZeroDuration());
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, std::vector<uint32_t>{gone->identity.id});
  EXPECT_FALSE(store->Get(gone->identity.id)->has_value());
  EXPECT_TRUE(store->Get(kept->identity.id)->has_value());
}

TEST_P(IdentityStoreContract, ReallocationAfterReleaseWithinGraceKeepsTheId) {
  auto store = Open();
  auto a = store->AllocateOrGet("k8s:app=a", "n1/e1");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(store->Release(a->identity.id, "n1/e1").ok());
  auto back = store->AllocateOrGet("k8s:app=a", "n1/e9");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->identity.id, a->identity.id);
  auto deleted = store->CollectGarbage(absl::ZeroDuration());
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(deleted->empty()) << "a re-referenced identity must not be collected";
}

TEST_P(IdentityStoreContract, ExhaustedRangeIsResourceExhausted) {
  auto store = Open(256, 257);
  ASSERT_TRUE(store->AllocateOrGet("k8s:app=a", "o").ok());
  ASSERT_TRUE(store->AllocateOrGet("k8s:app=b", "o").ok());
  auto c = store->AllocateOrGet("k8s:app=c", "o");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(c.status().message().find("256-257"), std::string::npos);
}

TEST_P(IdentityStoreContract, FreedNumbersAreReused) {
  auto store = Open(256, 258);
  auto a = store->AllocateOrGet("k8s:app=a", "o");
  auto b = store->AllocateOrGet("k8s:app=b", "o");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(store->Release(a->identity.id, "o").ok());
  ASSERT_TRUE(store->CollectGarbage(absl::ZeroDuration()).ok());
  auto c = store->AllocateOrGet("k8s:app=c", "o");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->identity.id, a->identity.id);
}

TEST_P(IdentityStoreContract, ChangesResumeFromARevision) {
  auto store = Open();
  auto snapshot = store->List();
  ASSERT_TRUE(snapshot.ok());
  uint64_t start = snapshot->revision;
  auto a = store->AllocateOrGet("k8s:app=a", "o");
  auto b = store->AllocateOrGet("k8s:app=b", "o");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(store->Release(a->identity.id, "o").ok());
  ASSERT_TRUE(store->CollectGarbage(absl::ZeroDuration()).ok());
  auto changes = store->ChangesSince(start);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 3u);
  EXPECT_EQ((*changes)[0].kind, ChangeKind::kUpsert);
  EXPECT_EQ((*changes)[2].kind, ChangeKind::kDelete);
  EXPECT_EQ((*changes)[2].identity.labels_key, "k8s:app=a");
  auto tail = store->ChangesSince((*changes)[1].revision);
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->size(), 1u);
  EXPECT_EQ((*tail)[0].revision, (*changes)[2].revision);
}

TEST_P(IdentityStoreContract, SurvivesReopen) {
  uint32_t id;
  {
    auto store = Open();
    auto a = store->AllocateOrGet("k8s:app=a", "o");
    ASSERT_TRUE(a.ok());
    id = a->identity.id;
  }
  auto store = Open();
  auto found = store->Lookup("k8s:app=a");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, id);
}

TEST_P(IdentityStoreContract, ConcurrentAllocationsAgree) {
  auto store = Open();
  constexpr int kThreads = 8, kLabelSets = 50;
  std::vector<std::vector<uint32_t>> seen(kThreads, std::vector<uint32_t>(kLabelSets));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kLabelSets; ++i) {
        int set = (i * 7 + t) % kLabelSets;
        auto r = store->AllocateOrGet("k8s:app=s" + std::to_string(set), "n/t" + std::to_string(t));
        seen[t][set] = r.ok() ? r->identity.id : 0;
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint32_t> ids;
  for (int set = 0; set < kLabelSets; ++set) {
    for (int t = 0; t < kThreads; ++t) {
      ASSERT_NE(seen[t][set], 0u);
      EXPECT_EQ(seen[t][set], seen[0][set]) << "label set " << set << " got two ids";
    }
    ids.insert(seen[0][set]);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kLabelSets)) << "an id was given to two label sets";
}

// Calls `step` every 200 ms until it returns true or `timeout` passes.
template <typename F>
bool PollUntil(F step, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (step()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

TEST_P(IdentityStoreContract, ReferencesLiveAsLongAsTheirNodeHeartbeats) {
  auto store = Open();
  auto first = store->NodeHeartbeat("alive", absl::Seconds(2));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->new_session);
  auto second = store->NodeHeartbeat("alive", absl::Seconds(2));
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->new_session) << "a heartbeat within the TTL continues the session";
  ASSERT_TRUE(store->NodeHeartbeat("silent", absl::Seconds(2)).ok());
  auto alive = store->AllocateOrGet("k8s:app=alive", "alive/e1");
  auto silent = store->AllocateOrGet("k8s:app=silent", "silent/e1");
  auto shared = store->AllocateOrGet("k8s:app=shared", "silent/e2");
  ASSERT_TRUE(alive.ok() && silent.ok() && shared.ok());
  ASSERT_TRUE(store->AllocateOrGet("k8s:app=shared", "alive/e2").ok());

  // "alive" keeps heartbeating, "silent" stops: only its references go, and
  // then the identity only it held is collected (grace 0).
  std::vector<uint32_t> collected;
  ASSERT_TRUE(PollUntil(
      [&] {
        EXPECT_TRUE(store->NodeHeartbeat("alive", absl::Seconds(2)).ok());
        auto deleted = store->CollectGarbage(absl::ZeroDuration());
        EXPECT_TRUE(deleted.ok()) << deleted.status();
        if (deleted.ok()) collected.insert(collected.end(), deleted->begin(), deleted->end());
        return !collected.empty();
      },
      std::chrono::seconds(15)))
      << "the silent node's references never expired";
  EXPECT_EQ(collected, std::vector<uint32_t>{silent->identity.id});
  EXPECT_TRUE(store->Get(alive->identity.id)->has_value());
  EXPECT_TRUE(store->Get(shared->identity.id)->has_value()) << "still referenced by the live node";
  EXPECT_FALSE(store->Get(silent->identity.id)->has_value());
  // The silent node coming back starts a new session: it must re-assert.
  auto back = store->NodeHeartbeat("silent", absl::Seconds(2));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->new_session);
}

TEST_P(IdentityStoreContract, IpCacheEntriesFollowTheirOwnerNode) {
  auto store = Open();
  ASSERT_TRUE(store->NodeHeartbeat("n1", absl::Seconds(2)).ok());
  ASSERT_TRUE(store->NodeHeartbeat("n2", absl::Seconds(30)).ok());
  auto start = store->ListIpCache();
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_TRUE(start->entries.empty());
  auto r1 = store->UpsertIpCacheEntry({"10.0.0.1/32", 300, "n1"});
  auto r2 = store->UpsertIpCacheEntry({"10.0.0.2/32", 301, "n2"});
  ASSERT_TRUE(r1.ok() && r2.ok()) << r1.status() << r2.status();
  EXPECT_LT(*r1, *r2);
  auto unchanged = store->UpsertIpCacheEntry({"10.0.0.2/32", 301, "n2"});
  ASSERT_TRUE(unchanged.ok());
  auto listed = store->ListIpCache();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->entries, (std::vector<IpCacheRecord>{{"10.0.0.1/32", 300, "n1"}, {"10.0.0.2/32", 301, "n2"}}));
  // Only the owner deletes.
  EXPECT_FALSE(*store->DeleteIpCacheEntry("10.0.0.2/32", "n1"));
  EXPECT_TRUE(*store->DeleteIpCacheEntry("10.0.0.2/32", "n2"));
  EXPECT_FALSE(*store->DeleteIpCacheEntry("10.0.0.2/32", "n2"));

  auto changes = store->IpCacheChangesSince(start->revision);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 3u) << "an unchanged upsert is no change";
  EXPECT_EQ((*changes)[0].entry, (IpCacheRecord{"10.0.0.1/32", 300, "n1"}));
  EXPECT_EQ((*changes)[2].kind, ChangeKind::kDelete);
  EXPECT_EQ((*changes)[2].entry, (IpCacheRecord{"10.0.0.2/32", 301, "n2"})) << "a deletion names what it deleted";
  auto tail = store->IpCacheChangesSince((*changes)[0].revision);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->size(), 2u);

  // n1 goes silent: its entry goes away, with a deletion watchers see.
  uint64_t before_expiry = (*changes)[2].revision;
  std::vector<IpCacheChange> expired;
  ASSERT_TRUE(PollUntil(
      [&] {
        EXPECT_TRUE(store->NodeHeartbeat("n2", absl::Seconds(30)).ok());  // sweeps dead nodes on SQLite
        auto got = store->IpCacheChangesSince(before_expiry);
        if (got.ok()) expired = *got;
        return !expired.empty();
      },
      std::chrono::seconds(15)));
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].kind, ChangeKind::kDelete);
  EXPECT_EQ(expired[0].entry.prefix, "10.0.0.1/32");
  EXPECT_TRUE(store->ListIpCache()->entries.empty());
}

// One real etcd per test process (gtest_discover_tests runs each test in
// its own process), started on first use and killed at exit. Each test
// gets its own key prefix named after its directory, so reopening the same
// dir reopens the same identities.
testsupport::EtcdTestServer& SharedEtcd() {
  static std::unique_ptr<testsupport::EtcdTestServer> server = [] {
    auto started = testsupport::EtcdTestServer::Start("contract");
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      std::abort();
    }
    return std::move(*started);
  }();
  return *server;
}

std::unique_ptr<IdentityStore> OpenEtcdStore(const std::string& dir, uint32_t first, uint32_t last) {
  etcd::EtcdIdentityStoreOptions options;
  options.client.endpoints = {SharedEtcd().endpoint()};
  options.prefix = "/ebpfcni-contract" + dir + "/";
  options.first_id = first;
  options.last_id = last;
  options.lease_ttl_seconds = 5;
  options.node_ttl_seconds = 30;
  auto store = etcd::EtcdIdentityStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

INSTANTIATE_TEST_SUITE_P(
    Backends, IdentityStoreContract,
    ::testing::Values(Backend{"sqlite",
                              [](const std::string& dir, uint32_t first, uint32_t last) -> std::unique_ptr<IdentityStore> {
                                auto store = SqliteIdentityStore::Open(dir + "/identity.db", {first, last});
                                EXPECT_TRUE(store.ok()) << store.status();
                                return store.ok() ? std::move(*store) : nullptr;
                              }},
                      Backend{"etcd", OpenEtcdStore}),
    [](const ::testing::TestParamInfo<Backend>& info) { return info.param.name; });

}  // namespace
}  // namespace ebpfcni::identity
