#include "cni/plugin/version.h"

#include <gtest/gtest.h>

namespace ebpfcni::cni {
namespace {

TEST(VersionTest, Supported) {
  for (const char* v : {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}) EXPECT_TRUE(IsSupportedCniVersion(v)) << v;
  for (const char* v : {"0.1.0", "0.2.0", "1.2.0", "", "1.0"}) EXPECT_FALSE(IsSupportedCniVersion(v)) << v;
}

TEST(VersionTest, Compare) {
  EXPECT_TRUE(CniVersionAtLeast("1.1.0", "1.1.0"));
  EXPECT_TRUE(CniVersionAtLeast("1.0.0", "0.4.0"));
  EXPECT_TRUE(CniVersionAtLeast("0.10.0", "0.4.0"));  // numeric, not lexical
  EXPECT_FALSE(CniVersionAtLeast("0.3.1", "0.4.0"));
  EXPECT_FALSE(CniVersionAtLeast("1.0.0", "1.1.0"));
  EXPECT_FALSE(CniVersionAtLeast("garbage", "0.3.0"));
}

TEST(VersionTest, ParseSemVer) {
  absl::StatusOr<SemVer> v = ParseSemVer("1.2.3");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, (SemVer{1, 2, 3}));
  for (const char* bad : {"1.2", "1.2.3.4", "a.b.c", "1..3", "-1.0.0", "1.0.0 "}) EXPECT_FALSE(ParseSemVer(bad).ok()) << bad;
}

TEST(VersionTest, VersionInfoIsTheSpecShape) {
  EXPECT_EQ(VersionInfo(), nlohmann::json::parse(
                               R"({"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})"));
}

}  // namespace
}  // namespace ebpfcni::cni
