#include "services/policy/clusterstate/yaml_to_json.h"

#include <gtest/gtest.h>

namespace ebpfcni::policy {
namespace {

nlohmann::json Convert(const std::string& yaml) {
  absl::StatusOr<nlohmann::json> json = YamlToJson(YAML::Load(yaml));
  EXPECT_TRUE(json.ok()) << json.status();
  return json.ok() ? *json : nlohmann::json();
}

TEST(YamlToJsonTest, PlainScalarsAreTypedQuotedOnesStayStrings) {
  nlohmann::json j = Convert(R"(
port: 80
quoted: "80"
single: '443'
name: http
negative: -5
hex: 0x1F
octal: 0o17
float: 1.5
exp: 1e3
yes_word: yes
t: true
f: False
n: null
tilde: ~
empty:
quoted_null: "null"
quoted_true: "true"
block: |
  80
big: 18446744073709551615
)");
  EXPECT_TRUE(j["port"].is_number_integer());
  EXPECT_EQ(j["port"], 80);
  EXPECT_TRUE(j["quoted"].is_string());
  EXPECT_EQ(j["quoted"], "80");
  EXPECT_EQ(j["single"], "443");
  EXPECT_EQ(j["name"], "http");
  EXPECT_EQ(j["negative"], -5);
  EXPECT_EQ(j["hex"], 31);
  EXPECT_EQ(j["octal"], 15);
  EXPECT_TRUE(j["float"].is_number_float());
  EXPECT_DOUBLE_EQ(j["float"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["exp"].get<double>(), 1000.0);
  // YAML 1.2 (yaml-cpp): "yes" is a string, not a boolean.
  EXPECT_EQ(j["yes_word"], "yes");
  EXPECT_EQ(j["t"], true);
  EXPECT_EQ(j["f"], false);
  EXPECT_TRUE(j["n"].is_null());
  EXPECT_TRUE(j["tilde"].is_null());
  EXPECT_TRUE(j["empty"].is_null());
  EXPECT_EQ(j["quoted_null"], "null");
  EXPECT_EQ(j["quoted_true"], "true");
  EXPECT_EQ(j["block"], "80\n");
  EXPECT_TRUE(j["big"].is_number_unsigned());
  EXPECT_EQ(j["big"].get<uint64_t>(), 18446744073709551615ull);
}

TEST(YamlToJsonTest, SerialisesLikeTheApi) {
  nlohmann::json j = Convert("ports:\n- port: 80\n  protocol: TCP\n- port: \"http\"\n");
  EXPECT_EQ(j.dump(), R"({"ports":[{"port":80,"protocol":"TCP"},{"port":"http"}]})");
}

TEST(YamlToJsonTest, ExplicitTags) {
  nlohmann::json j = Convert("a: !!str 80\nb: !!int \"81\"\nc: !!bool \"true\"\n");
  EXPECT_EQ(j["a"], "80");
  EXPECT_EQ(j["b"], 81);
  EXPECT_EQ(j["c"], true);
  absl::StatusOr<nlohmann::json> bad = YamlToJson(YAML::Load("a: 1\nb: !!int x\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos) << bad.status();
}

TEST(YamlToJsonTest, NonScalarKeysAreRejectedWithTheirLine) {
  absl::StatusOr<nlohmann::json> bad = YamlToJson(YAML::Load("a: 1\n? [x, y]\n: 2\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos) << bad.status();
}

TEST(YamlToJsonTest, MergeKeysAndAnchors) {
  nlohmann::json j = Convert(R"(
base: &base {app: web, tier: front}
extra: &extra {tier: back, zone: a}
merged:
  <<: [*base, *extra]
  app: api
alias: *base
quoted:
  "<<": literal
)");
  EXPECT_EQ(j["merged"], nlohmann::json({{"app", "api"}, {"tier", "front"}, {"zone", "a"}}));
  EXPECT_EQ(j["alias"], nlohmann::json({{"app", "web"}, {"tier", "front"}}));
  EXPECT_EQ(j["quoted"]["<<"], "literal");
}

TEST(YamlToJsonTest, NumericKeysBecomeStringKeys) {
  nlohmann::json j = Convert("80: web\n");
  EXPECT_EQ(j["80"], "web");
}

}  // namespace
}  // namespace ebpfcni::policy
