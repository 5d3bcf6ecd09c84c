#include "common/net/ip_address.h"

#include <gtest/gtest.h>

namespace ebpfcni {
namespace {

TEST(IpAddressTest, ParsesBothFamiliesAndRoundTrips) {
  auto v4 = IpAddress::Parse("10.244.0.7");
  ASSERT_TRUE(v4.ok());
  EXPECT_TRUE(v4->is_v4());
  EXPECT_EQ(v4->ToString(), "10.244.0.7");
  auto v6 = IpAddress::Parse("fd00::1");
  ASSERT_TRUE(v6.ok());
  EXPECT_FALSE(v6->is_v4());
  EXPECT_EQ(v6->ToString(), "fd00::1");
}

TEST(IpAddressTest, RejectsGarbage) {
  EXPECT_FALSE(IpAddress::Parse("10.0.0").ok());
  EXPECT_FALSE(IpAddress::Parse("").ok());
  EXPECT_FALSE(IpAddress::Parse("fd00:::1").ok());
}

TEST(IpAddressTest, NumberArithmetic) {
  auto a = *IpAddress::Parse("10.0.0.255");
  auto b = IpAddress::FromNumber(IpFamily::kIpv4, a.ToNumber() + 1);
  EXPECT_EQ(b.ToString(), "10.0.1.0");
}

TEST(IpPrefixTest, NetworkLastContains) {
  auto p = IpPrefix::Parse("10.244.1.17/24");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Network().ToString(), "10.244.1.0");
  EXPECT_EQ(p->Last().ToString(), "10.244.1.255");
  EXPECT_TRUE(p->Contains(*IpAddress::Parse("10.244.1.200")));
  EXPECT_FALSE(p->Contains(*IpAddress::Parse("10.244.2.1")));
  EXPECT_FALSE(p->Contains(*IpAddress::Parse("fd00::1")));
  EXPECT_EQ(p->SizeSaturated(), 256u);
}

TEST(IpPrefixTest, Ipv6) {
  auto p = IpPrefix::Parse("fd00:10:244::/64");
  ASSERT_TRUE(p.ok());
  // RFC 5952: a single zero group is not compressed to "::".
  EXPECT_EQ(p->Last().ToString(), "fd00:10:244:0:ffff:ffff:ffff:ffff");
  EXPECT_EQ(p->SizeSaturated(), UINT64_MAX);
}

TEST(IpPrefixTest, RejectsBadPrefixes) {
  EXPECT_FALSE(IpPrefix::Parse("10.0.0.0/33").ok());
  EXPECT_FALSE(IpPrefix::Parse("10.0.0.0/").ok());
  EXPECT_FALSE(IpPrefix::Parse("10.0.0.0").ok());
  EXPECT_TRUE(IpPrefix::Parse("10.0.0.1", /*allow_bare_address=*/true).ok());
  EXPECT_FALSE(IpPrefix::Parse("fd00::/129").ok());
  EXPECT_FALSE(IpPrefix::Parse("x/8").ok());
}

}  // namespace
}  // namespace ebpfcni
