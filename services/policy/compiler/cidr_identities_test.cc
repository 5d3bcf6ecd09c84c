#include "services/policy/compiler/cidr_identities.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/policy/compiler/policy_engine.h"

namespace ebpfcni::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

IpPrefix Prefix(const char* text) { return *IpPrefix::Parse(text); }
IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

TEST(CidrIdentitiesTest, OneIdentityPerPrefixWithReferences) {
  CidrIdentities cidrs(kFirstCidrIdentity);
  auto [a, new_a] = cidrs.Acquire(Prefix("10.0.0.0/8"));
  auto [b, new_b] = cidrs.Acquire(Prefix("10.1.0.0/16"));
  auto [a_again, new_a_again] = cidrs.Acquire(Prefix("10.0.0.0/8"));
  EXPECT_TRUE(new_a);
  EXPECT_TRUE(new_b);
  EXPECT_FALSE(new_a_again);
  EXPECT_EQ(a, kFirstCidrIdentity);
  EXPECT_EQ(b, kFirstCidrIdentity + 1);
  EXPECT_EQ(a_again, a);
  EXPECT_EQ(cidrs.Release(Prefix("10.0.0.0/8")), std::nullopt) << "still referenced";
  EXPECT_EQ(cidrs.Release(Prefix("10.0.0.0/8")), a);
  auto [a2, new_a2] = cidrs.Acquire(Prefix("10.0.0.0/8"));
  EXPECT_TRUE(new_a2);
  EXPECT_NE(a2, a) << "identities are never reused";
}

TEST(CidrIdentitiesTest, WorldIsReservedAndNeverInstalled) {
  CidrIdentities cidrs(kFirstCidrIdentity);
  // Each family's own world: world-ipv4 (9), world-ipv6 (10).
  EXPECT_EQ(cidrs.Acquire(Prefix("0.0.0.0/0")).first, 9u);
  EXPECT_EQ(cidrs.Acquire(Prefix("::/0")).first, 10u);
  EXPECT_EQ(cidrs.size(), 0u);
  EXPECT_THAT(cidrs.TakeChanges().first, IsEmpty());
}

TEST(CidrIdentitiesTest, LookupIsLongestPrefixMatch) {
  CidrIdentities cidrs(kFirstCidrIdentity);
  uint32_t wide = cidrs.Acquire(Prefix("10.0.0.0/8")).first;
  uint32_t narrow = cidrs.Acquire(Prefix("10.1.0.0/16")).first;
  uint32_t v6 = cidrs.Acquire(Prefix("fd00::/64")).first;
  EXPECT_EQ(cidrs.Lookup(Ip("10.1.2.3")), narrow);
  EXPECT_EQ(cidrs.Lookup(Ip("10.2.2.3")), wide);
  EXPECT_EQ(cidrs.Lookup(Ip("fd00::1")), v6);
  EXPECT_EQ(cidrs.Lookup(Ip("11.0.0.1")), 0u);
}

TEST(CidrIdentitiesTest, ChangesCancelOutBetweenTakes) {
  CidrIdentities cidrs(kFirstCidrIdentity);
  uint32_t a = cidrs.Acquire(Prefix("10.0.0.0/8")).first;
  cidrs.Acquire(Prefix("192.168.0.0/16"));
  cidrs.Release(Prefix("192.168.0.0/16"));
  auto [upserts, deletes] = cidrs.TakeChanges();
  EXPECT_THAT(upserts, ElementsAre(Pair(Prefix("10.0.0.0/8"), a)));
  EXPECT_THAT(deletes, IsEmpty());
  cidrs.Release(Prefix("10.0.0.0/8"));
  auto [upserts2, deletes2] = cidrs.TakeChanges();
  EXPECT_THAT(upserts2, IsEmpty());
  EXPECT_THAT(deletes2, ElementsAre(Prefix("10.0.0.0/8")));
  EXPECT_THAT(cidrs.TakeChanges().second, IsEmpty());
}

}  // namespace
}  // namespace ebpfcni::policy
