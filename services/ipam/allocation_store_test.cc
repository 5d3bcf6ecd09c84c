#include "services/ipam/allocation_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>

#include <set>
#include <thread>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/ipam/test_temp_dir.h"

namespace ebpfcni::ipam {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::vector<Pool> Pools(const std::string& v4, const std::string& v6 = "") {
  auto pools = ConfigurePools(v4, v6);
  EXPECT_TRUE(pools.ok()) << pools.status();
  return pools.ok() ? *pools : std::vector<Pool>{};
}

class AllocationStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<AllocationStore> OpenStore(std::vector<Pool> pools) {
    auto store = AllocationStore::Open(db_path_, std::move(pools));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  static std::string AllocateOne(AllocationStore& store, const AttachmentKey& key) {
    auto result = store.Allocate(key, "ns", "pod");
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok() || result->assignments.empty()) return "";
    return result->assignments[0].address.ToString();
  }

  TestTempDir dir_;
  // A nested directory checks that missing state dirs are created.
  std::string db_path_ = dir_.File("state/sub/ipam.db");
};

TEST_F(AllocationStoreTest, AllocateIsIdempotentPerAttachment) {
  auto store = OpenStore(Pools("10.244.0.0/24"));
  ASSERT_NE(store, nullptr);
  auto first = store->Allocate({"c1", "eth0"}, "default", "web");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->already_allocated);
  ASSERT_THAT(first->assignments, SizeIs(1));
  EXPECT_EQ(first->assignments[0].address.ToString(), "10.244.0.2");
  EXPECT_EQ(first->assignments[0].gateway.ToString(), "10.244.0.1");
  EXPECT_EQ(first->assignments[0].pool_prefix_length, 24);
  EXPECT_EQ(first->assignments[0].pool, "default-ipv4");

  auto again = store->Allocate({"c1", "eth0"}, "default", "web");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->already_allocated);
  EXPECT_EQ(again->assignments, first->assignments);

  // Another interface of the same container is another attachment.
  EXPECT_EQ(AllocateOne(*store, {"c1", "net1"}), "10.244.0.3");
}

TEST_F(AllocationStoreTest, DualStackGivesOneAddressPerPool) {
  auto store = OpenStore(Pools("10.244.0.0/24", "fd00:244::/64"));
  ASSERT_NE(store, nullptr);
  auto result = store->Allocate({"c1", "eth0"}, "", "");
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_THAT(result->assignments, SizeIs(2));
  EXPECT_EQ(result->assignments[0].address.ToString(), "10.244.0.2");
  EXPECT_EQ(result->assignments[1].address.ToString(), "fd00:244::2");
  EXPECT_EQ(result->assignments[1].gateway.ToString(), "fd00:244::1");
  EXPECT_EQ(result->assignments[1].pool_prefix_length, 64);
}

TEST_F(AllocationStoreTest, EmptyIdentifiersAreInvalidArguments) {
  auto store = OpenStore(Pools("10.244.0.0/24"));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Allocate({"", "eth0"}, "", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Allocate({"c1", ""}, "", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Release({"", "eth0"}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AllocationStoreTest, ReleaseFreesAndIsIdempotent) {
  auto store = OpenStore(Pools("10.244.0.0/24", "fd00::/120"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Allocate({"c1", "eth0"}, "", "").ok());
  auto released = store->Release({"c1", "eth0"});
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_THAT(*released, SizeIs(2));
  auto again = store->Release({"c1", "eth0"});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(*again, IsEmpty());
  EXPECT_THAT(*store->List(std::nullopt), IsEmpty());
}

TEST_F(AllocationStoreTest, NextFitDoesNotReuseAJustReleasedAddressAndWraps) {
  auto store = OpenStore(Pools("10.0.0.0/29"));  // .2 .. .6: five addresses.
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(AllocateOne(*store, {"a", "eth0"}), "10.0.0.2");
  ASSERT_TRUE(store->Release({"a", "eth0"}).ok());
  EXPECT_EQ(AllocateOne(*store, {"b", "eth0"}), "10.0.0.3");
  EXPECT_EQ(AllocateOne(*store, {"c", "eth0"}), "10.0.0.4");
  EXPECT_EQ(AllocateOne(*store, {"d", "eth0"}), "10.0.0.5");
  EXPECT_EQ(AllocateOne(*store, {"e", "eth0"}), "10.0.0.6");
  // The end of the pool: the search wraps to the start, where .2 is free.
  EXPECT_EQ(AllocateOne(*store, {"f", "eth0"}), "10.0.0.2");
  ASSERT_TRUE(store->Release({"c", "eth0"}).ok());
  EXPECT_EQ(AllocateOne(*store, {"g", "eth0"}), "10.0.0.4");
}

TEST_F(AllocationStoreTest, ExhaustionNamesThePoolAndAllocatesNothing) {
  auto store = OpenStore(Pools("10.9.0.0/30", "fd00::/64"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Allocate({"a", "eth0"}, "", "").ok());
  auto full = store->Allocate({"b", "eth0"}, "", "");
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("default-ipv4"));
  EXPECT_THAT(full.status().message(), HasSubstr("10.9.0.0/30"));
  // All-or-nothing: "b" did not keep an IPv6 address either.
  EXPECT_THAT(*store->List(std::string("b")), IsEmpty());
  auto usage = store->Usage();
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ((*usage)[1].allocated, 1u);
  // Freeing the address makes the pool usable again.
  ASSERT_TRUE(store->Release({"a", "eth0"}).ok());
  EXPECT_TRUE(store->Allocate({"b", "eth0"}, "", "").ok());
}

TEST_F(AllocationStoreTest, FillingASmallPoolHandsOutEveryUsableAddressOnce) {
  auto store = OpenStore(Pools("10.0.0.0/28"));
  ASSERT_NE(store, nullptr);
  std::set<std::string> seen;
  for (int i = 0; i < 13; ++i) seen.insert(AllocateOne(*store, {"c" + std::to_string(i), "eth0"}));
  EXPECT_THAT(seen, SizeIs(13));
  EXPECT_FALSE(seen.contains("10.0.0.0") || seen.contains("10.0.0.1") || seen.contains("10.0.0.15"));
  EXPECT_EQ(store->Allocate({"one-too-many", "eth0"}, "", "").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(AllocationStoreTest, StatePersistsAcrossReopen) {
  {
    auto store = OpenStore(Pools("10.244.0.0/24"));
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(AllocateOne(*store, {"c1", "eth0"}), "10.244.0.2");
    EXPECT_EQ(AllocateOne(*store, {"c2", "eth0"}), "10.244.0.3");
    ASSERT_TRUE(store->Release({"c2", "eth0"}).ok());
  }
  auto store = OpenStore(Pools("10.244.0.0/24"));
  ASSERT_NE(store, nullptr);
  auto records = store->List(std::nullopt);
  ASSERT_TRUE(records.ok());
  ASSERT_THAT(*records, SizeIs(1));
  EXPECT_EQ((*records)[0].attachment, (AttachmentKey{"c1", "eth0"}));
  EXPECT_EQ((*records)[0].pod_namespace, "ns");
  EXPECT_EQ((*records)[0].pod_name, "pod");
  EXPECT_GT((*records)[0].created_unix_ms, 0);
  auto again = store->Allocate({"c1", "eth0"}, "", "");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_allocated);
  EXPECT_EQ(again->assignments[0].address.ToString(), "10.244.0.2");
  // The next-fit cursor is persisted too: .3 was released last, so not reused.
  EXPECT_EQ(AllocateOne(*store, {"c3", "eth0"}), "10.244.0.4");
}

TEST_F(AllocationStoreTest, DatabaseItselfRejectsTwoHoldersOfOneAddress) {
  {
    auto store = OpenStore(Pools("10.244.0.0/24"));
    ASSERT_NE(store, nullptr);
    AllocateOne(*store, {"c1", "eth0"});
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  auto exec = [&](const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); };
  // Same pool and address, other attachment.
  EXPECT_EQ(exec("INSERT INTO allocations (container_id, ifname, pool, address, pool_prefix_length, gateway, "
                 "created_unix_ms) VALUES ('c2', 'eth0', 'default-ipv4', '10.244.0.2', 24, '10.244.0.1', 1)"),
            SQLITE_CONSTRAINT);
  // Same attachment and pool, other address.
  EXPECT_EQ(exec("INSERT INTO allocations (container_id, ifname, pool, address, pool_prefix_length, gateway, "
                 "created_unix_ms) VALUES ('c1', 'eth0', 'default-ipv4', '10.244.0.9', 24, '10.244.0.1', 1)"),
            SQLITE_CONSTRAINT);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), AllocationStore::kSchemaVersion);
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(AllocationStoreTest, RefusesADatabaseFromANewerSchema) {
  { ASSERT_NE(OpenStore(Pools("10.244.0.0/24")), nullptr); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto store = AllocationStore::Open(db_path_, Pools("10.244.0.0/24"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("99"));
}

TEST_F(AllocationStoreTest, GarbageCollectFreesEverythingNotValid) {
  auto store = OpenStore(Pools("10.244.0.0/24", "fd00::/64"));
  ASSERT_NE(store, nullptr);
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(store->Allocate({id, "eth0"}, "", "").ok());
  ASSERT_TRUE(store->Allocate({"b", "net1"}, "", "").ok());
  auto freed = store->GarbageCollect({{"b", "eth0"}, {"not-allocated", "eth0"}});
  ASSERT_TRUE(freed.ok()) << freed.status();
  std::vector<AttachmentKey> freed_keys;
  for (const auto& record : *freed) {
    freed_keys.push_back(record.attachment);
    EXPECT_THAT(record.assignments, SizeIs(2));
  }
  EXPECT_THAT(freed_keys, ElementsAre(AttachmentKey{"a", "eth0"}, AttachmentKey{"b", "net1"},
                                      AttachmentKey{"c", "eth0"}));
  auto left = store->List(std::nullopt);
  ASSERT_THAT(*left, SizeIs(1));
  EXPECT_EQ((*left)[0].attachment, (AttachmentKey{"b", "eth0"}));
  // Nothing left to collect: a second run frees nothing.
  EXPECT_THAT(*store->GarbageCollect({{"b", "eth0"}}), IsEmpty());
}

TEST_F(AllocationStoreTest, GarbageCollectScopedToANetworkKeepsOtherNetworksAndUnnamedAllocations) {
  auto store = OpenStore(Pools("10.244.0.0/24"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Allocate({"a", "eth0"}, "", "", "net-a").ok());
  ASSERT_TRUE(store->Allocate({"a", "net1"}, "", "", "net-b").ok());
  ASSERT_TRUE(store->Allocate({"b", "eth0"}, "", "", "net-a").ok());
  ASSERT_TRUE(store->Allocate({"legacy", "eth0"}, "", "").ok());
  // Asking again under another network does not re-label the allocation.
  ASSERT_TRUE(store->Allocate({"a", "eth0"}, "", "", "net-b").ok());

  // GC of net-a with nothing valid frees net-a's attachments only.
  auto freed = store->GarbageCollect({}, std::string("net-a"));
  ASSERT_TRUE(freed.ok()) << freed.status();
  std::vector<AttachmentKey> freed_keys;
  for (const auto& record : *freed) {
    freed_keys.push_back(record.attachment);
    EXPECT_EQ(record.network_name, "net-a");
  }
  EXPECT_THAT(freed_keys, ElementsAre(AttachmentKey{"a", "eth0"}, AttachmentKey{"b", "eth0"}));
  auto left = store->List(std::nullopt);
  ASSERT_THAT(*left, SizeIs(2));
  EXPECT_EQ((*left)[0].attachment, (AttachmentKey{"a", "net1"}));
  EXPECT_EQ((*left)[0].network_name, "net-b");
  EXPECT_EQ((*left)[1].attachment, (AttachmentKey{"legacy", "eth0"}));
  EXPECT_EQ((*left)[1].network_name, "");

  // net-b's own GC collects its attachment; the unnamed one survives both.
  EXPECT_THAT(*store->GarbageCollect({}, std::string("net-b")), SizeIs(1));
  EXPECT_THAT(*store->List(std::nullopt), SizeIs(1));
  // An unscoped GC (as before network names existed) frees it.
  EXPECT_THAT(*store->GarbageCollect({}), SizeIs(1));
}

TEST_F(AllocationStoreTest, MigratesAVersion1DatabaseKeepingItsAllocations) {
  // A database exactly as schema version 1 wrote it, with one allocation.
  std::filesystem::create_directories(std::filesystem::path(db_path_).parent_path());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  auto exec = [&](const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); };
  ASSERT_EQ(exec("CREATE TABLE allocations (container_id TEXT NOT NULL, ifname TEXT NOT NULL, pool TEXT NOT NULL, "
                 "address TEXT NOT NULL, pool_prefix_length INTEGER NOT NULL, gateway TEXT NOT NULL, "
                 "pod_namespace TEXT NOT NULL DEFAULT '', pod_name TEXT NOT NULL DEFAULT '', "
                 "created_unix_ms INTEGER NOT NULL, PRIMARY KEY (container_id, ifname, pool), "
                 "UNIQUE (pool, address));"
                 "CREATE TABLE pool_cursors (pool TEXT PRIMARY KEY, last_address TEXT NOT NULL);"
                 "INSERT INTO allocations VALUES ('old', 'eth0', 'default-ipv4', '10.244.0.7', 24, '10.244.0.1', "
                 "'ns', 'web', 1234);"
                 "PRAGMA user_version = 1;"),
            SQLITE_OK);
  sqlite3_close(db);

  auto store = OpenStore(Pools("10.244.0.0/24"));
  ASSERT_NE(store, nullptr);
  auto old = store->List(std::string("old"));
  ASSERT_TRUE(old.ok()) << old.status();
  ASSERT_THAT(*old, SizeIs(1));
  EXPECT_EQ((*old)[0].assignments[0].address.ToString(), "10.244.0.7");
  EXPECT_EQ((*old)[0].pod_name, "web");
  EXPECT_EQ((*old)[0].created_unix_ms, 1234);
  EXPECT_EQ((*old)[0].network_name, "");
  // The old address is still taken, and new allocations record a network.
  auto fresh = store->Allocate({"new", "eth0"}, "", "", "net-a");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_NE(fresh->assignments[0].address.ToString(), "10.244.0.7");
  EXPECT_EQ((*store->List(std::string("new")))[0].network_name, "net-a");
  // Scoped GC cannot tell which network the old allocation belongs to: kept.
  EXPECT_THAT(*store->GarbageCollect({}, std::string("net-a")), SizeIs(1));
  EXPECT_THAT(*store->List(std::string("old")), SizeIs(1));
  store.reset();

  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 2);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  // Opening the migrated database again changes nothing.
  auto reopened = OpenStore(Pools("10.244.0.0/24"));
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(*reopened->List(std::string("old")), SizeIs(1));
}

TEST_F(AllocationStoreTest, ListFiltersByContainer) {
  auto store = OpenStore(Pools("10.244.0.0/24"));
  ASSERT_NE(store, nullptr);
  AllocateOne(*store, {"a", "eth0"});
  AllocateOne(*store, {"a", "net1"});
  AllocateOne(*store, {"b", "eth0"});
  EXPECT_THAT(*store->List(std::string("a")), SizeIs(2));
  EXPECT_THAT(*store->List(std::string("b")), SizeIs(1));
  EXPECT_THAT(*store->List(std::string("zzz")), IsEmpty());
  EXPECT_THAT(*store->List(std::nullopt), SizeIs(3));
}

TEST_F(AllocationStoreTest, KeepsAllocationsOutsideAReconfiguredPool) {
  {
    auto store = OpenStore(Pools("10.1.0.0/24", "fd00::/64"));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Allocate({"old", "eth0"}, "", "").ok());
  }
  {
    // New IPv4 range, IPv6 dropped: opening works, warns, and loses nothing.
    auto previous_logger = spdlog::default_logger();
    auto captured = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", captured));
    auto store = OpenStore(Pools("10.2.0.0/24"));
    spdlog::set_default_logger(previous_logger);
    ASSERT_NE(store, nullptr);
    const std::vector<std::string> warnings = captured->last_formatted();
    auto logged = [&](const std::string& text) {
      return std::any_of(warnings.begin(), warnings.end(),
                         [&](const std::string& line) { return line.find(text) != std::string::npos; });
    };
    EXPECT_TRUE(logged("10.1.0.2, which is not a usable address of pool default-ipv4 (10.2.0.0/24)"));
    EXPECT_TRUE(logged("fd00::2 from pool default-ipv6, which is no longer configured"));
    auto old = store->List(std::string("old"));
    ASSERT_THAT(*old, SizeIs(1));
    EXPECT_THAT((*old)[0].assignments, SizeIs(2));
    EXPECT_EQ(AllocateOne(*store, {"new", "eth0"}), "10.2.0.2");
    auto usage = store->Usage();
    ASSERT_TRUE(usage.ok());
    EXPECT_EQ((*usage)[0].allocated, 1u);  // Only "new" is inside 10.2.0.0/24.
    // The old attachment still gets what it holds.
    auto again = store->Allocate({"old", "eth0"}, "", "");
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->already_allocated);
    EXPECT_EQ(again->assignments[0].address.ToString(), "10.1.0.2");
    ASSERT_TRUE(store->Release({"old", "eth0"}).ok());
  }
}

TEST_F(AllocationStoreTest, AddingAFamilyLaterGivesExistingAttachmentsTheNewFamilyOnly) {
  {
    auto store = OpenStore(Pools("10.1.0.0/24"));
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(AllocateOne(*store, {"c1", "eth0"}), "10.1.0.2");
  }
  auto store = OpenStore(Pools("10.1.0.0/24", "fd00::/64"));
  ASSERT_NE(store, nullptr);
  auto result = store->Allocate({"c1", "eth0"}, "", "");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->already_allocated);  // Something new was handed out.
  ASSERT_THAT(result->assignments, SizeIs(2));
  EXPECT_EQ(result->assignments[0].address.ToString(), "10.1.0.2");
  EXPECT_EQ(result->assignments[1].address.ToString(), "fd00::2");
}

// Two stores on one file stand for two daemons mistakenly sharing a
// --state_dir: BEGIN IMMEDIATE and UNIQUE(pool, address) still keep every
// address to one holder.
TEST_F(AllocationStoreTest, TwoConnectionsOnOneDatabaseNeverShareAnAddress) {
  auto first = OpenStore(Pools("10.3.0.0/24"));
  auto second = OpenStore(Pools("10.3.0.0/24"));
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::vector<std::string> from_first, from_second;
  std::thread a([&] {
    for (int i = 0; i < 40; ++i) from_first.push_back(AllocateOne(*first, {"a" + std::to_string(i), "eth0"}));
  });
  std::thread b([&] {
    for (int i = 0; i < 40; ++i) from_second.push_back(AllocateOne(*second, {"b" + std::to_string(i), "eth0"}));
  });
  a.join();
  b.join();
  std::set<std::string> all(from_first.begin(), from_first.end());
  all.insert(from_second.begin(), from_second.end());
  all.erase("");
  EXPECT_THAT(all, SizeIs(80));
}

TEST_F(AllocationStoreTest, RejectsNoPoolsAndDuplicateNames) {
  EXPECT_EQ(AllocationStore::Open(db_path_, {}).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<Pool> twice = {*Pool::Parse("p", "10.0.0.0/24"), *Pool::Parse("p", "10.1.0.0/24")};
  EXPECT_EQ(AllocationStore::Open(db_path_, twice).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AllocationStoreTest, UnwritableStateDirIsAClearError) {
  auto store = AllocationStore::Open("/proc/ebpfcni-ipam-test/ipam.db", Pools("10.0.0.0/24"));
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr("/proc/ebpfcni-ipam-test"));
}

}  // namespace
}  // namespace ebpfcni::ipam
