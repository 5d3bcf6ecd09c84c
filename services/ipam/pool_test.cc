#include "services/ipam/pool.h"

#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ebpfcni::ipam {
namespace {

using ::testing::HasSubstr;

IpAddress Addr(const char* text) { return *IpAddress::Parse(text); }

Pool MakePool(const char* cidr) {
  auto pool = Pool::Parse("test", cidr);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return *pool;
}

// Walks every index of a small pool and checks the handed-out set is exactly
// the pool minus its reserved addresses.
void ExpectUsableAddressesAre(const Pool& pool, const std::set<std::string>& expected) {
  std::set<std::string> seen;
  for (uint64_t i = 0; i < pool.Capacity(); ++i) {
    IpAddress address = pool.AddressAt(i);
    EXPECT_TRUE(pool.cidr().Contains(address)) << address.ToString();
    EXPECT_FALSE(pool.IsReserved(address)) << address.ToString();
    EXPECT_EQ(pool.IndexOf(address), i) << address.ToString();
    seen.insert(address.ToString());
  }
  EXPECT_EQ(seen, expected);
}

TEST(PoolTest, Ipv4Slash24HandsOutDotTwoToDot254) {
  Pool pool = MakePool("10.244.0.0/24");
  EXPECT_EQ(pool.Capacity(), 253u);
  EXPECT_EQ(pool.gateway(), Addr("10.244.0.1"));
  EXPECT_EQ(pool.AddressAt(0), Addr("10.244.0.2"));
  EXPECT_EQ(pool.AddressAt(252), Addr("10.244.0.254"));
  EXPECT_TRUE(pool.IsReserved(Addr("10.244.0.0")));
  EXPECT_TRUE(pool.IsReserved(Addr("10.244.0.1")));
  EXPECT_TRUE(pool.IsReserved(Addr("10.244.0.255")));
  EXPECT_EQ(pool.IndexOf(Addr("10.244.0.255")), std::nullopt);
  EXPECT_EQ(pool.IndexOf(Addr("10.244.1.2")), std::nullopt);
  EXPECT_FALSE(pool.IsReserved(Addr("10.244.1.0")));  // Outside, not "reserved".
  std::set<std::string> expected;
  for (int i = 2; i <= 254; ++i) expected.insert("10.244.0." + std::to_string(i));
  ExpectUsableAddressesAre(pool, expected);
}

TEST(PoolTest, Ipv4Slash30HasExactlyOneAddress) {
  Pool pool = MakePool("192.168.7.4/30");
  EXPECT_EQ(pool.Capacity(), 1u);
  EXPECT_EQ(pool.gateway(), Addr("192.168.7.5"));
  ExpectUsableAddressesAre(pool, {"192.168.7.6"});
  EXPECT_TRUE(pool.IsReserved(Addr("192.168.7.7")));
}

TEST(PoolTest, HostBitsAreCleared) {
  Pool pool = MakePool("10.1.2.77/24");
  EXPECT_EQ(pool.cidr().ToString(), "10.1.2.0/24");
  EXPECT_EQ(pool.gateway(), Addr("10.1.2.1"));
}

TEST(PoolTest, Ipv6Slash120ExcludesOnlyNetworkAndGateway) {
  Pool pool = MakePool("fd00:10::/120");
  EXPECT_EQ(pool.Capacity(), 254u);
  EXPECT_EQ(pool.gateway(), Addr("fd00:10::1"));
  EXPECT_TRUE(pool.IsReserved(Addr("fd00:10::")));  // Subnet-router anycast.
  EXPECT_TRUE(pool.IsReserved(Addr("fd00:10::1")));
  // IPv6 has no broadcast: the last address is usable.
  EXPECT_EQ(pool.IndexOf(Addr("fd00:10::ff")), 253u);
  std::set<std::string> expected;
  for (int i = 2; i <= 255; ++i) {
    expected.insert(IpAddress::FromNumber(IpFamily::kIpv6, Addr("fd00:10::").ToNumber() + i).ToString());
  }
  ExpectUsableAddressesAre(pool, expected);
}

TEST(PoolTest, Ipv6Slash64IsCappedAndComputedByOffset) {
  Pool pool = MakePool("fd00:1:2:3::/64");
  EXPECT_EQ(pool.Capacity(), Pool::kMaxCapacity);
  EXPECT_EQ(pool.AddressAt(0), Addr("fd00:1:2:3::2"));
  EXPECT_EQ(pool.AddressAt(Pool::kMaxCapacity - 1), Addr("fd00:1:2:3:8000::1"));
  EXPECT_EQ(pool.IndexOf(Addr("fd00:1:2:3:8000::1")), Pool::kMaxCapacity - 1);
  EXPECT_TRUE(pool.IsReserved(Addr("fd00:1:2:3::")));
  EXPECT_TRUE(pool.IsReserved(Addr("fd00:1:2:3::1")));
  EXPECT_EQ(pool.IndexOf(Addr("fd00:1:2:4::2")), std::nullopt);
}

TEST(PoolTest, WholeIpv6SpaceDoesNotOverflow) {
  Pool pool = MakePool("::/0");
  EXPECT_EQ(pool.Capacity(), Pool::kMaxCapacity);
  EXPECT_EQ(pool.AddressAt(0), Addr("::2"));
}

TEST(PoolTest, TooSmallPoolsAreRejectedWithAdvice) {
  for (const char* cidr : {"10.0.0.0/31", "10.0.0.1/32", "fd00::/127", "fd00::1/128"}) {
    auto pool = Pool::Parse("default", cidr);
    ASSERT_FALSE(pool.ok()) << cidr;
    EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(pool.status().message(), HasSubstr("too small")) << cidr;
  }
  EXPECT_TRUE(Pool::Parse("default", "fd00::/126").ok());
}

TEST(PoolTest, GarbageIsRejected) {
  for (const char* cidr : {"", "10.0.0.0", "10.0.0.0/33", "banana/24", "fd00::/129"}) {
    EXPECT_EQ(Pool::Parse("default", cidr).status().code(), absl::StatusCode::kInvalidArgument) << cidr;
  }
}

TEST(ConfigurePoolsTest, DualStackNamesPoolsByFamily) {
  auto pools = ConfigurePools("10.244.0.0/24", "fd00::/64");
  ASSERT_TRUE(pools.ok()) << pools.status();
  ASSERT_EQ(pools->size(), 2u);
  EXPECT_EQ((*pools)[0].name(), "default-ipv4");
  EXPECT_EQ((*pools)[0].family(), IpFamily::kIpv4);
  EXPECT_EQ((*pools)[1].name(), "default-ipv6");
  EXPECT_EQ((*pools)[1].family(), IpFamily::kIpv6);
}

TEST(ConfigurePoolsTest, SingleStackEitherFamily) {
  EXPECT_EQ(ConfigurePools("10.244.0.0/24", "")->size(), 1u);
  auto v6 = ConfigurePools("", "fd00::/64");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->front().name(), "default-ipv6");
}

TEST(ConfigurePoolsTest, RejectsNoPoolWrongFamilyAndBadCidrNamingTheFlag) {
  EXPECT_THAT(ConfigurePools("", "").status().message(), HasSubstr("--pool_cidr"));
  EXPECT_THAT(ConfigurePools("fd00::/64", "").status().message(), HasSubstr("expected an IPv4"));
  EXPECT_THAT(ConfigurePools("", "10.0.0.0/8").status().message(), HasSubstr("expected an IPv6"));
  EXPECT_THAT(ConfigurePools("10.0.0.0/32", "").status().message(), HasSubstr("--pool_cidr=10.0.0.0/32"));
}

}  // namespace
}  // namespace ebpfcni::ipam
