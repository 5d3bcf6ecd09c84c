#include "services/datapath/endpoint_registry.h"

#include <fstream>

#include <gtest/gtest.h>

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
  testing::ScopedTempDir dir_{"registry"};
  std::string path_ = dir_.path() + "/datapath/endpoints.json";
};

TEST_F(EndpointRegistryTest, IdIsStablePerKeyAndDistinctAcrossKeys) {
  auto registry = EndpointRegistry::Open(path_);
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
    auto registry = EndpointRegistry::Open(path_);
    ASSERT_TRUE(registry.ok()) << registry.status();
    auto a = (*registry)->Put(MakeRecord("a", 10));
    ASSERT_TRUE(a.ok());
    id = a->endpoint_id;
  }
  auto reopened = EndpointRegistry::Open(path_);
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
  auto registry = EndpointRegistry::Open(path_);
  ASSERT_TRUE(registry.ok());
  auto a = (*registry)->Put(MakeRecord("a", 10));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(*(*registry)->Remove({"a", "eth0"}));
  auto b = (*registry)->Put(MakeRecord("b", 11));
  ASSERT_TRUE(b.ok());
  EXPECT_NE(b->endpoint_id, a->endpoint_id);
}

TEST_F(EndpointRegistryTest, RemoveReportsWhetherSomethingWasThere) {
  auto registry = EndpointRegistry::Open(path_);
  ASSERT_TRUE(registry.ok());
  ASSERT_TRUE((*registry)->Put(MakeRecord("a", 10)).ok());
  EXPECT_TRUE(*(*registry)->Remove({"a", "eth0"}));
  EXPECT_FALSE(*(*registry)->Remove({"a", "eth0"}));
  auto reopened = EndpointRegistry::Open(path_);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->List().empty());
}

TEST_F(EndpointRegistryTest, CorruptFileIsAnErrorNotAnEmptyRegistry) {
  {
    auto registry = EndpointRegistry::Open(path_);
    ASSERT_TRUE(registry.ok());
  }
  std::ofstream(path_) << "{ not json";
  auto registry = EndpointRegistry::Open(path_);
  ASSERT_FALSE(registry.ok());
  EXPECT_EQ(registry.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(registry.status().message().find(path_), std::string::npos);
}

}  // namespace
}  // namespace ebpfcni::datapath
