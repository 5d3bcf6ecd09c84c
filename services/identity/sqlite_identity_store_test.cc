// SQLite-only behaviour: schema upgrades of an existing identity.db. The
// shared contract lives in identity_store_contract_test.cc.
#include "services/identity/sqlite_identity_store.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace ebpfcni::identity {
namespace {

TEST(SqliteIdentityStore, UpgradesAVersion1DatabaseKeepingIdentitiesAndReferences) {
  auto dir = std::filesystem::temp_directory_path() / ("ebpfcni-idstore-upgrade-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "identity.db").string();
  {
    // What a build before node liveness left behind.
    auto db = SqliteDatabase::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)->Exec(R"sql(
      CREATE TABLE identities (id INTEGER PRIMARY KEY, labels_key TEXT NOT NULL UNIQUE,
                               created_ms INTEGER NOT NULL, unreferenced_since_ms INTEGER);
      CREATE TABLE refs (id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
                         owner TEXT NOT NULL, PRIMARY KEY (id, owner));
      CREATE TABLE changes (revision INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,
                            id INTEGER NOT NULL, labels_key TEXT NOT NULL);
      INSERT INTO identities VALUES (256, 'k8s:app=old', 0, NULL);
      INSERT INTO refs VALUES (256, 'node-1/ep1'), (256, 'node-1/ep2');
      INSERT INTO changes (kind, id, labels_key) VALUES (0, 256, 'k8s:app=old');
      PRAGMA user_version = 1;
    )sql").ok());
  }
  auto store = SqliteIdentityStore::Open(path, {256, 65535});
  ASSERT_TRUE(store.ok()) << store.status();
  auto found = (*store)->Lookup("k8s:app=old");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, 256u);
  // The old references belong to node-1, which got a live session.
  auto beat = (*store)->NodeHeartbeat("node-1", absl::ZeroDuration());
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_FALSE(beat->new_session);
  auto left = (*store)->Release(256, "node-1/ep1");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 1u);
  EXPECT_TRUE((*store)->ListIpCache()->entries.empty());
  store->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ebpfcni::identity
