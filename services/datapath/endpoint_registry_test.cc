#include "services/datapath/endpoint_registry.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "services/datapath/state_store.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

EndpointRecord MakeRecord(const std::string& container, uint32_t ifindex) {
  EndpointRecord record;
  record.key = {container, "eth0"};
  record.host_ifindex = ifindex;
  record.host_interface_name = "veth" + container;
  record.netns_path = "/var/run/netns/" + container;
  record.addresses = {"10.0.0.5", "fd00::5"};
  record.pod_namespace = "default";
  record.pod_name = "pod-" + container;
  return record;
}

class EndpointRegistryTest : public ::testing::Test {
 protected:
  // A registry over a freshly opened store, like a daemon start.
  struct Opened {
    std::unique_ptr<StateStore> store;
    std::unique_ptr<EndpointRegistry> registry;
    EndpointRegistry* operator->() { return registry.get(); }
  };
  absl::StatusOr<Opened> Open() {
    absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open(db_path_, legacy_dir_);
    if (!store.ok()) return store.status();
    absl::StatusOr<std::unique_ptr<EndpointRegistry>> registry =
        EndpointRegistry::Open(store->get());
    if (!registry.ok()) return registry.status();
    return Opened{*std::move(store), *std::move(registry)};
  }

  testing::ScopedTempDir dir_{"registry"};
  std::string legacy_dir_ = dir_.path() + "/datapath";
  std::string db_path_ = legacy_dir_ + "/state.db";
};

TEST_F(EndpointRegistryTest, IdIsStablePerKeyAndDistinctAcrossKeys) {
  auto registry = Open();
  ASSERT_TRUE(registry.ok()) << registry.status();
  auto a = (*registry)->Put(MakeRecord("a", 10));
  auto b = (*registry)->Put(MakeRecord("b", 11));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->endpoint_id, 0u);
  EXPECT_NE(a->endpoint_id, b->endpoint_id);

  EndpointRecord updated = MakeRecord("a", 12);
  updated.endpoint_id = 999;  // ignored
  auto again = (*registry)->Put(updated);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->endpoint_id, a->endpoint_id);
  EXPECT_EQ((*registry)->Find({"a", "eth0"})->host_ifindex, 12u);
}

TEST_F(EndpointRegistryTest, SurvivesReopen) {
  uint32_t id;
  {
    auto registry = Open();
    ASSERT_TRUE(registry.ok()) << registry.status();
    auto a = (*registry)->Put(MakeRecord("a", 10));
    ASSERT_TRUE(a.ok());
    id = a->endpoint_id;
  }
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  std::optional<EndpointRecord> a = (*reopened)->Find({"a", "eth0"});
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->endpoint_id, id);
  EXPECT_EQ(a->addresses, (std::vector<std::string>{"10.0.0.5", "fd00::5"}));
  EXPECT_EQ(a->pod_name, "pod-a");
  EXPECT_EQ((*reopened)->FindByIfindex(10)->key.container_id, "a");
  // A new key after reopening does not collide with the restored id.
  auto b = (*reopened)->Put(MakeRecord("b", 11));
  ASSERT_TRUE(b.ok());
  EXPECT_NE(b->endpoint_id, id);
}

TEST_F(EndpointRegistryTest, FreedIdIsNotReusedImmediately) {
  auto registry = Open();
  ASSERT_TRUE(registry.ok());
  auto a = (*registry)->Put(MakeRecord("a", 10));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(*(*registry)->Remove({"a", "eth0"}));
  auto b = (*registry)->Put(MakeRecord("b", 11));
  ASSERT_TRUE(b.ok());
  EXPECT_NE(b->endpoint_id, a->endpoint_id);
}

TEST_F(EndpointRegistryTest, RemoveReportsWhetherSomethingWasThere) {
  auto registry = Open();
  ASSERT_TRUE(registry.ok());
  ASSERT_TRUE((*registry)->Put(MakeRecord("a", 10)).ok());
  EXPECT_TRUE(*(*registry)->Remove({"a", "eth0"}));
  EXPECT_FALSE(*(*registry)->Remove({"a", "eth0"}));
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->List().empty());
}

TEST_F(EndpointRegistryTest, CorruptStateIsAnErrorNotAnEmptyRegistry) {
  {
    auto registry = Open();
    ASSERT_TRUE(registry.ok());
  }
  std::filesystem::remove(db_path_ + "-wal");
  std::filesystem::remove(db_path_ + "-shm");
  std::ofstream(db_path_, std::ios::trunc) << std::string(8192, 'x');
  auto registry = Open();
  ASSERT_FALSE(registry.ok());
  EXPECT_NE(registry.status().message().find(db_path_), std::string::npos) << registry.status();
}

// What earlier versions left behind (endpoints.json, policies/<id>.json) is
// imported once, ids and next id included, then renamed out of the way.
TEST_F(EndpointRegistryTest, ImportsTheJsonFilesOfEarlierVersionsOnce) {
  std::filesystem::create_directories(legacy_dir_ + "/policies");
  nlohmann::json a = {{"container_id", "a"}, {"interface_name", "eth0"}, {"endpoint_id", 7},
                      {"host_ifindex", 10}, {"addresses", {"10.0.0.5"}}, {"identity", 300}};
  std::ofstream(legacy_dir_ + "/endpoints.json")
      << nlohmann::json{{"version", 1}, {"next_id", 8}, {"endpoints", {a}}}.dump();
  EndpointPolicy policy;
  policy.ingress_isolated = true;
  policy.rules = {PolicyRule{PolicyDirection::kIngress, 300, 6, 80, PolicyAction::kAllow, 5}};
  std::ofstream(legacy_dir_ + "/policies/7.json") << EncodePolicy(policy);
  {
    auto registry = Open();
    ASSERT_TRUE(registry.ok()) << registry.status();
    std::optional<EndpointRecord> imported = (*registry)->Find({"a", "eth0"});
    ASSERT_TRUE(imported.has_value());
    EXPECT_EQ(imported->endpoint_id, 7u);
    EXPECT_EQ(imported->identity, 300u);
    auto b = (*registry)->Put(MakeRecord("b", 11));
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(b->endpoint_id, 8u) << "next id imported";
    absl::StatusOr<std::optional<EndpointPolicy>> stored = registry->store->LoadPolicy(7);
    ASSERT_TRUE(stored.ok() && stored->has_value()) << stored.status();
    EXPECT_EQ(**stored, policy);
    ASSERT_TRUE(*(*registry)->Remove({"a", "eth0"}));
  }
  EXPECT_FALSE(std::filesystem::exists(legacy_dir_ + "/endpoints.json"));
  EXPECT_TRUE(std::filesystem::exists(legacy_dir_ + "/endpoints.json.imported"));
  EXPECT_TRUE(std::filesystem::exists(legacy_dir_ + "/policies.imported/7.json"));
  // Reopening does not import again: the removed endpoint stays removed.
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok());
  EXPECT_FALSE((*reopened)->Find({"a", "eth0"}).has_value());
  EXPECT_TRUE((*reopened)->Find({"b", "eth0"}).has_value());
}

TEST_F(EndpointRegistryTest, PolicyCopiesRoundTripIncludingRanges) {
  auto registry = Open();
  ASSERT_TRUE(registry.ok());
  EndpointPolicy policy;
  policy.egress_isolated = true;
  policy.verdict_events = true;
  PolicyRule range{PolicyDirection::kEgress, 0, 17, 1000, PolicyAction::kAllow, 9};
  range.end_port = 2000;
  policy.rules = {range};
  ASSERT_TRUE(registry->store->SavePolicy(3, policy).ok());
  absl::StatusOr<std::optional<EndpointPolicy>> loaded = registry->store->LoadPolicy(3);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ(**loaded, policy);
  ASSERT_TRUE(registry->store->RemovePolicy(3).ok());
  loaded = registry->store->LoadPolicy(3);
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->has_value());
}

}  // namespace
}  // namespace ebpfcni::datapath
