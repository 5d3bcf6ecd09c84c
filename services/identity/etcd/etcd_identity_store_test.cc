// etcd-specific behaviour of EtcdIdentityStore against a real etcd: lease
// expiry of a replica's references, connection loss, and history across
// replicas. The shared contract lives in identity_store_contract_test.cc.
#include "services/identity/etcd/etcd_identity_store.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "services/identity/etcd/testing/etcd_test_server.h"

namespace ebpfcni::identity::etcd {
namespace {

using testsupport::EtcdTestServer;

// Polls `condition` every 50 ms for at most `timeout`.
template <typename F>
bool Eventually(F condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

class EtcdIdentityStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = EtcdTestServer::Start(::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(server.ok()) << server.status();
    etcd_ = std::move(*server);
  }
  std::unique_ptr<EtcdIdentityStore> Open(int64_t lease_ttl_seconds = 10) {
    EtcdIdentityStoreOptions options;
    options.client.endpoints = {etcd_->endpoint()};
    options.client.request_timeout = std::chrono::milliseconds(1000);
    options.prefix = "/ebpfcni-store-test/";
    options.lease_ttl_seconds = lease_ttl_seconds;
    auto store = EtcdIdentityStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  std::unique_ptr<EtcdTestServer> etcd_;
};

// Heartbeats `node` through `store` every 300 ms for `duration`.
void HeartbeatFor(EtcdIdentityStore& store, const std::string& node, std::chrono::milliseconds duration) {
  auto deadline = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < deadline) {
    auto beat = store.NodeHeartbeat(node, absl::Seconds(2));
    EXPECT_TRUE(beat.ok()) << beat.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

TEST_F(EtcdIdentityStoreTest, DeadReplicaKeepsReferencesOfHeartbeatingNodes) {
  auto doomed = Open(/*lease_ttl_seconds=*/2);
  auto survivor = Open();
  ASSERT_TRUE(doomed && survivor);
  // node-a's session and references are made through the doomed replica.
  ASSERT_TRUE(doomed->NodeHeartbeat("node-a", absl::Seconds(2)).ok());
  auto only_a = doomed->AllocateOrGet("k8s:app=only-a", "node-a/ep1");
  ASSERT_TRUE(only_a.ok()) << only_a.status();
  ASSERT_TRUE(Eventually([&] { return survivor->CachedReferenceCount(only_a->identity.id) == 1; },
                         std::chrono::seconds(5)));
  const int64_t lease = doomed->CachedNodeLease("node-a");
  EXPECT_NE(lease, 0);

  doomed->AbandonLease();  // as if the replica had been killed
  doomed.reset();
  // node-a fails over to the survivor and keeps heartbeating, well past
  // both the replica's and the node's TTL.
  HeartbeatFor(*survivor, "node-a", std::chrono::seconds(5));
  EXPECT_EQ(survivor->CachedNodeLease("node-a"), lease) << "the same session continues on another replica";
  EXPECT_EQ(survivor->CachedReferenceCount(only_a->identity.id), 1u)
      << "a dead replica must not drop the references of a live node";
  auto deleted = survivor->CollectGarbage(absl::ZeroDuration());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(deleted->empty());
}

TEST_F(EtcdIdentityStoreTest, SilentNodeLosesOnlyItsReferencesAndGetsTheGracePeriod) {
  auto first = Open();
  auto second = Open();
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(first->NodeHeartbeat("silent", absl::Seconds(2)).ok());
  ASSERT_TRUE(second->NodeHeartbeat("alive", absl::Seconds(2)).ok());
  auto only_silent = first->AllocateOrGet("k8s:app=only-silent", "silent/ep1");
  auto shared = first->AllocateOrGet("k8s:app=shared", "silent/ep2");
  ASSERT_TRUE(only_silent.ok() && shared.ok());
  ASSERT_TRUE(second->AllocateOrGet("k8s:app=shared", "alive/ep1").ok());
  ASSERT_EQ(second->CachedReferenceCount(shared->identity.id), 2u);

  std::thread alive([&] { HeartbeatFor(*second, "alive", std::chrono::seconds(5)); });
  bool expired = Eventually([&] { return second->CachedReferenceCount(only_silent->identity.id) == 0; },
                            std::chrono::seconds(15));
  alive.join();
  ASSERT_TRUE(expired) << "the silent node's reference did not expire with its session";
  EXPECT_EQ(second->CachedReferenceCount(shared->identity.id), 1u);
  EXPECT_EQ(second->CachedNodeLease("silent"), 0) << "the session key expires with it";
  EXPECT_NE(second->CachedNodeLease("alive"), 0);

  // The first collection starts the grace period rather than deleting.
  auto deleted = second->CollectGarbage(absl::Hours(1));
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(deleted->empty());
  deleted = second->CollectGarbage(absl::ZeroDuration());
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, std::vector<uint32_t>{only_silent->identity.id});
  EXPECT_TRUE(second->Get(shared->identity.id)->has_value());
  // The node coming back gets a new session and can re-assert.
  auto back = first->NodeHeartbeat("silent", absl::Seconds(2));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->new_session);
  auto again = first->AllocateOrGet("k8s:app=shared", "silent/ep2");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->identity.id, shared->identity.id);
}

TEST_F(EtcdIdentityStoreTest, ConcurrentFirstHeartbeatsThroughTwoReplicasMakeOneSession) {
  auto first = Open();
  auto second = Open();
  ASSERT_TRUE(first && second);
  std::vector<std::thread> threads;
  std::atomic<int> new_sessions{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto& store = (t % 2 == 0) ? *first : *second;
      auto beat = store.NodeHeartbeat("racy", absl::Seconds(10));
      EXPECT_TRUE(beat.ok()) << beat.status();
      if (beat.ok() && beat->new_session) ++new_sessions;
      EXPECT_TRUE(store.AllocateOrGet("k8s:app=racy", "racy/ep" + std::to_string(t)).ok());
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(new_sessions.load(), 1);
  EXPECT_NE(first->CachedNodeLease("racy"), 0);
  EXPECT_EQ(first->CachedNodeLease("racy"), second->CachedNodeLease("racy"));
  EXPECT_EQ(first->CachedReferenceCount((*first->Lookup("k8s:app=racy"))->id), 8u);
}

TEST_F(EtcdIdentityStoreTest, IpCacheChangesResumeOnAnotherReplica) {
  auto first = Open();
  ASSERT_TRUE(first);
  uint64_t before_second = first->ListIpCache()->revision;
  ASSERT_TRUE(first->UpsertIpCacheEntry({"10.1.0.1/32", 400, "n1"}).ok());
  auto second = Open();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->ListIpCache()->entries, (std::vector<IpCacheRecord>{{"10.1.0.1/32", 400, "n1"}}));
  // From before the second replica existed: read back from etcd's history.
  auto older = second->IpCacheChangesSince(before_second);
  ASSERT_TRUE(older.ok()) << older.status();
  ASSERT_EQ(older->size(), 1u);
  EXPECT_EQ((*older)[0].entry, (IpCacheRecord{"10.1.0.1/32", 400, "n1"}));

  // A watcher that read up to `from` on the first replica resumes on the
  // second and misses nothing; revisions are the same on both.
  uint64_t from = first->ListIpCache()->revision;
  ASSERT_TRUE(first->UpsertIpCacheEntry({"10.1.0.2/32", 401, "n1"}).ok());
  ASSERT_TRUE(*first->DeleteIpCacheEntry("10.1.0.1/32", "n1"));
  std::vector<IpCacheChange> seen;
  ASSERT_TRUE(Eventually(
      [&] {
        seen = *second->IpCacheChangesSince(from);
        return seen.size() >= 2;
      },
      std::chrono::seconds(5)));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].kind, ChangeKind::kUpsert);
  EXPECT_EQ(seen[1].kind, ChangeKind::kDelete);
  EXPECT_EQ(seen[1].entry, (IpCacheRecord{"10.1.0.1/32", 400, "n1"}));
  auto on_first = first->IpCacheChangesSince(from);
  ASSERT_TRUE(on_first.ok());
  ASSERT_EQ(on_first->size(), 2u);
  EXPECT_EQ((*on_first)[1].revision, seen[1].revision);
}

TEST_F(EtcdIdentityStoreTest, OtherReplicasChangesWakeWatchersAtOnce) {
  auto writer = Open();
  auto reader = Open();
  ASSERT_TRUE(writer && reader);
  // The node's session first, so the allocation below is one change.
  ASSERT_TRUE(writer->NodeHeartbeat("n", absl::Seconds(10)).ok());
  ASSERT_TRUE(Eventually([&] { return reader->CachedNodeLease("n") != 0; }, std::chrono::seconds(5)));
  std::mutex mu;
  std::condition_variable cv;
  int notifications = 0;
  reader->SetChangeListener([&] {
    std::lock_guard<std::mutex> lock(mu);
    ++notifications;
    cv.notify_all();
  });
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(writer->AllocateOrGet("k8s:app=remote", "n/e1").ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(2), [&] { return notifications > 0; }))
        << "the reader was not told about the other replica's change";
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(500));
  EXPECT_TRUE(reader->Lookup("k8s:app=remote")->has_value()) << "notified only once the cache has the change";
  reader->SetChangeListener(nullptr);
}

TEST_F(EtcdIdentityStoreTest, LostEtcdIsUnavailableAndNothingIsAllocatedTwice) {
  auto store = Open();
  ASSERT_TRUE(store);
  auto a = store->AllocateOrGet("k8s:app=a", "n/e1");
  ASSERT_TRUE(a.ok());

  etcd_->Kill();
  auto started = std::chrono::steady_clock::now();
  auto b = store->AllocateOrGet("k8s:app=b", "n/e2");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3)) << "bounded by the deadline";
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(b.status().message().find("etcd at " + etcd_->endpoint() + " unreachable"), std::string::npos)
      << b.status();
  // Reads notice too, once the watch has broken: a cache that no longer
  // follows etcd must not answer as if it did.
  EXPECT_TRUE(Eventually([&] { return store->Get(a->identity.id).status().code() == absl::StatusCode::kUnavailable; },
                         std::chrono::seconds(5)));

  ASSERT_TRUE(etcd_->Restart().ok());
  absl::StatusOr<AllocationResult> b_again = absl::UnknownError("not tried");
  ASSERT_TRUE(Eventually(
      [&] {
        b_again = store->AllocateOrGet("k8s:app=b", "n/e2");
        return b_again.ok();
      },
      std::chrono::seconds(20)))
      << b_again.status();
  EXPECT_NE(b_again->identity.id, a->identity.id);
  auto a_again = store->AllocateOrGet("k8s:app=a", "n/e3");
  ASSERT_TRUE(a_again.ok());
  EXPECT_EQ(a_again->identity.id, a->identity.id);
  EXPECT_FALSE(a_again->newly_allocated);
}

TEST_F(EtcdIdentityStoreTest, WatchResumesAfterEtcdRestartWithoutLoss) {
  auto follower = Open();
  auto writer = Open();
  ASSERT_TRUE(follower && writer);
  uint64_t before = follower->List()->revision;
  auto a = writer->AllocateOrGet("k8s:app=a", "n/e1");
  ASSERT_TRUE(a.ok());

  etcd_->Kill();
  ASSERT_TRUE(etcd_->Restart().ok());
  // Written as soon as etcd is back, most likely before the follower's
  // watch has reconnected: it must be replayed from the revision the
  // follower had reached, not skipped.
  absl::StatusOr<AllocationResult> b = absl::UnknownError("not tried");
  ASSERT_TRUE(Eventually(
      [&] {
        b = writer->AllocateOrGet("k8s:app=b", "n/e2");
        return b.ok();
      },
      std::chrono::seconds(20)))
      << b.status();
  std::vector<IdentityChange> changes;
  ASSERT_TRUE(Eventually(
      [&] {
        auto got = follower->ChangesSince(before);
        if (got.ok()) changes = *got;
        return got.ok() && changes.size() >= 2;
      },
      std::chrono::seconds(20)));
  ASSERT_EQ(changes.size(), 2u) << "each change exactly once";
  EXPECT_EQ(changes[0].identity, a->identity);
  EXPECT_EQ(changes[1].identity, b->identity);
  EXPECT_LT(changes[0].revision, changes[1].revision);
  auto found = follower->Lookup("k8s:app=b");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, b->identity.id);
}

TEST_F(EtcdIdentityStoreTest, RevisionsAreSharedAcrossReplicas) {
  auto first = Open();
  ASSERT_TRUE(first);
  uint64_t before_second = first->List()->revision;
  ASSERT_TRUE(first->AllocateOrGet("k8s:app=a", "n/e1").ok());
  auto second = Open();
  ASSERT_TRUE(second);
  // Revisions from before the second replica started come from etcd's
  // history: a watcher failing over loses nothing.
  auto older = second->ChangesSince(before_second);
  ASSERT_TRUE(older.ok()) << older.status();
  ASSERT_EQ(older->size(), 1u);
  EXPECT_EQ((*older)[0].identity.labels_key, "k8s:app=a");
  EXPECT_EQ((*older)[0].kind, ChangeKind::kUpsert);
  // Asking again (a watcher polling) is answered from what was read.
  auto again = second->ChangesSince(before_second);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].revision, (*older)[0].revision);

  uint64_t from = second->List()->revision;
  auto b = first->AllocateOrGet("k8s:app=b", "n/e2");
  ASSERT_TRUE(b.ok());
  std::vector<IdentityChange> seen;
  ASSERT_TRUE(Eventually(
      [&] {
        seen = *second->ChangesSince(from);
        return !seen.empty();
      },
      std::chrono::seconds(5)));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].identity, b->identity);
  // The same change carries the same (etcd) revision on both replicas, so a
  // watcher can resume on either.
  auto on_first = first->ChangesSince(from);
  ASSERT_TRUE(on_first.ok());
  ASSERT_EQ(on_first->size(), 1u);
  EXPECT_EQ((*on_first)[0].revision, seen[0].revision);
}

TEST_F(EtcdIdentityStoreTest, HistoryFromEtcdIncludesDeletionsAndEndsAtCompaction) {
  auto first = Open();
  ASSERT_TRUE(first);
  uint64_t start = first->List()->revision;
  auto a = first->AllocateOrGet("k8s:app=a", "n/e1");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(first->Release(a->identity.id, "n/e1").ok());
  ASSERT_TRUE(first->CollectGarbage(absl::ZeroDuration()).ok());
  auto second = Open();
  ASSERT_TRUE(second);
  auto changes = second->ChangesSince(start);
  ASSERT_TRUE(changes.ok()) << changes.status();
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_EQ((*changes)[1].kind, ChangeKind::kDelete);
  EXPECT_EQ((*changes)[1].identity, a->identity) << "a deletion names the labels it had";

  EtcdClient admin({{etcd_->endpoint()}, std::chrono::milliseconds(2000)});
  ASSERT_TRUE(admin.Compact(static_cast<int64_t>(second->List()->revision)).ok());
  // A replica that has not read that history yet cannot any more.
  auto third = Open();
  ASSERT_TRUE(third);
  auto compacted = third->ChangesSince(start);
  EXPECT_EQ(compacted.status().code(), absl::StatusCode::kOutOfRange) << compacted.status();
  // The one that read it before the compaction still answers from it.
  auto remembered = second->ChangesSince(start);
  ASSERT_TRUE(remembered.ok());
  EXPECT_EQ(remembered->size(), 2u);
}

TEST_F(EtcdIdentityStoreTest, ReplicaStartingOverManyIdentitiesLoadsThemAll) {
  auto writer = Open();
  ASSERT_TRUE(writer);
  // More keys than one snapshot page (identities plus their references).
  constexpr int kIdentities = 2600;
  for (int i = 0; i < kIdentities; ++i) {
    ASSERT_TRUE(writer->AllocateOrGet("k8s:app=many-" + std::to_string(i), "n/e" + std::to_string(i)).ok());
  }
  auto reader = Open();
  ASSERT_TRUE(reader);
  auto listed = reader->List();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->identities.size(), static_cast<size_t>(kIdentities));
  EXPECT_EQ(listed->revision, writer->List()->revision);
  EXPECT_EQ(reader->CachedReferenceCount((*reader->Lookup("k8s:app=many-2599"))->id), 1u);
}

}  // namespace
}  // namespace ebpfcni::identity::etcd
