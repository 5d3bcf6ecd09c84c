#include "services/identity/etcd/etcd_key_layout.h"

#include <gtest/gtest.h>

#include "services/identity/etcd/etcd_client.h"

namespace ebpfcni::identity::etcd {
namespace {

TEST(KeyLayout, KeysRoundTripThroughParse) {
  KeyLayout keys("/p/");
  EXPECT_EQ(keys.IdKey(256), "/p/id/0000000256");
  auto id = keys.Parse(keys.IdKey(4294967295u));
  EXPECT_EQ(id.kind, KeyLayout::Kind::kIdentity);
  EXPECT_EQ(id.id, 4294967295u);
  auto ref = keys.Parse(keys.RefKey(300, "node-a/ep/with/slashes"));
  EXPECT_EQ(ref.kind, KeyLayout::Kind::kRef);
  EXPECT_EQ(ref.id, 300u);
  auto marker = keys.Parse(keys.MarkerKey(301));
  EXPECT_EQ(marker.kind, KeyLayout::Kind::kMarker);
  EXPECT_EQ(marker.id, 301u);
  EXPECT_EQ(keys.Parse(keys.LabelsKey("k8s:app=a")).kind, KeyLayout::Kind::kLabels);
}

TEST(KeyLayout, ForeignOrMalformedKeysAreOther) {
  KeyLayout keys("/p/");
  EXPECT_EQ(keys.Parse("/q/id/0000000256").kind, KeyLayout::Kind::kOther);
  EXPECT_EQ(keys.Parse("/p/id/256").kind, KeyLayout::Kind::kOther);
  EXPECT_EQ(keys.Parse("/p/refs/0000000256").kind, KeyLayout::Kind::kOther);
  EXPECT_EQ(keys.Parse("/p/id/00000002x6").kind, KeyLayout::Kind::kOther);
}

TEST(KeyLayout, NodeAndIpCacheKeysCarryTheirName) {
  KeyLayout keys("/p/");
  auto node = keys.Parse(keys.NodeKey("worker-1"));
  EXPECT_EQ(node.kind, KeyLayout::Kind::kNode);
  EXPECT_EQ(node.name, "worker-1");
  auto entry = keys.Parse(keys.IpCacheKey("10.244.0.5/32"));
  EXPECT_EQ(entry.kind, KeyLayout::Kind::kIpCache);
  EXPECT_EQ(entry.name, "10.244.0.5/32");
  EXPECT_EQ(keys.Parse("/p/nodes/").kind, KeyLayout::Kind::kOther);
}

TEST(KeyLayout, PaddedIdsSortNumerically) {
  KeyLayout keys("/p/");
  EXPECT_LT(keys.IdKey(999), keys.IdKey(1000));
  // A refs prefix never matches another id's refs.
  EXPECT_NE(keys.RefKey(25, "x").rfind(keys.RefsPrefix(2), 0), 0u);
}

TEST(EtcdClient, PrefixEndIsTheNextKeyAfterThePrefix) {
  EXPECT_EQ(PrefixEnd("/p/"), "/p0");
  EXPECT_EQ(PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixEnd(std::string("\xff", 1)), std::string(1, '\0'));
}

TEST(EtcdClient, SeveralEndpointsBecomeOneBalancedTarget) {
  EXPECT_EQ(EtcdTarget({"127.0.0.1:2379"}), "127.0.0.1:2379");
  EXPECT_EQ(EtcdTarget({"127.0.0.1:2379", "127.0.0.2:2379"}), "ipv4:127.0.0.1:2379,127.0.0.2:2379");
  EXPECT_EQ(EtcdTarget({"[::1]:2379", "[::1]:2380"}), "ipv6:[::1]:2379,[::1]:2380");
}

}  // namespace
}  // namespace ebpfcni::identity::etcd
