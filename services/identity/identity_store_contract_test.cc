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
