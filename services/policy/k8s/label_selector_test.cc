#include "services/policy/k8s/label_selector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ebpfcni::policy::k8s {
namespace {

using ::testing::HasSubstr;

LabelSelector Parse(const char* text) {
  auto selector = LabelSelector::FromJson(nlohmann::json::parse(text), "spec.podSelector");
  EXPECT_TRUE(selector.ok()) << selector.status();
  return selector.ok() ? *selector : LabelSelector();
}

absl::Status ParseError(const char* text) {
  return LabelSelector::FromJson(nlohmann::json::parse(text), "spec.podSelector").status();
}

TEST(LabelSelectorTest, EmptySelectorMatchesEverything) {
  LabelSelector selector = Parse("{}");
  EXPECT_TRUE(selector.empty());
  EXPECT_TRUE(selector.Matches({}));
  EXPECT_TRUE(selector.Matches({{"app", "web"}}));
  EXPECT_EQ(selector.ToString(), "");
}

TEST(LabelSelectorTest, MatchLabelsNeedsEveryLabel) {
  LabelSelector selector = Parse(R"({"matchLabels": {"app": "web", "tier": "front"}})");
  EXPECT_TRUE(selector.Matches({{"app", "web"}, {"tier", "front"}, {"extra", "x"}}));
  EXPECT_FALSE(selector.Matches({{"app", "web"}}));
  EXPECT_FALSE(selector.Matches({{"app", "web"}, {"tier", "back"}}));
}

TEST(LabelSelectorTest, Operators) {
  LabelSelector in = Parse(R"({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]})");
  EXPECT_TRUE(in.Matches({{"env", "prod"}}));
  EXPECT_TRUE(in.Matches({{"env", "staging"}}));
  EXPECT_FALSE(in.Matches({{"env", "dev"}}));
  EXPECT_FALSE(in.Matches({}));

  LabelSelector not_in = Parse(R"({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]})");
  EXPECT_FALSE(not_in.Matches({{"env", "prod"}}));
  EXPECT_TRUE(not_in.Matches({{"env", "dev"}}));
  EXPECT_TRUE(not_in.Matches({})) << "NotIn matches objects without the key";

  LabelSelector exists = Parse(R"({"matchExpressions": [{"key": "env", "operator": "Exists"}]})");
  EXPECT_TRUE(exists.Matches({{"env", ""}}));
  EXPECT_FALSE(exists.Matches({{"other", "x"}}));

  LabelSelector absent = Parse(R"({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]})");
  EXPECT_FALSE(absent.Matches({{"env", "prod"}}));
  EXPECT_TRUE(absent.Matches({{"other", "x"}}));
}

TEST(LabelSelectorTest, LabelsAndExpressionsAreAnded) {
  LabelSelector selector = Parse(R"({"matchLabels": {"app": "db"},
      "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]})");
  EXPECT_TRUE(selector.Matches({{"app", "db"}, {"env", "prod"}}));
  EXPECT_FALSE(selector.Matches({{"app", "db"}, {"env", "dev"}}));
  EXPECT_FALSE(selector.Matches({{"app", "web"}, {"env", "prod"}}));
}

TEST(LabelSelectorTest, CanonicalTextIgnoresOrder) {
  LabelSelector a = Parse(R"({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
      {"key": "z", "operator": "Exists"}, {"key": "y", "operator": "In", "values": ["q", "p", "p"]}]})");
  LabelSelector b = Parse(R"({"matchLabels": {"a": "1", "b": "2"}, "matchExpressions": [
      {"key": "y", "operator": "In", "values": ["p", "q"]}, {"key": "z", "operator": "Exists"}]})");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.ToString(), "a=1,b=2,y in (p,q),z");
}

TEST(LabelSelectorTest, ValidationNamesTheField) {
  EXPECT_EQ(ParseError(R"({"matchExpressions": [{"key": "a", "operator": "Contains", "values": ["x"]}]})").message(),
            "spec.podSelector.matchExpressions[0].operator: unknown operator \"Contains\" (supported: In, NotIn, "
            "Exists, DoesNotExist)");
  absl::Status no_values = ParseError(R"({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})");
  EXPECT_EQ(no_values.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_values.message(), HasSubstr("spec.podSelector.matchExpressions[0].values: must be specified"));
  EXPECT_THAT(ParseError(R"({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})").message(),
              HasSubstr("spec.podSelector.matchExpressions[0].values: may not be specified"));
  EXPECT_THAT(ParseError(R"({"matchExpressions": [{"operator": "Exists"}]})").message(),
              HasSubstr("spec.podSelector.matchExpressions[0].key: required"));
  EXPECT_THAT(ParseError(R"({"matchLabels": {"app": 3}})").message(),
              HasSubstr("spec.podSelector.matchLabels[app]: expected a string, got an integer"));
  EXPECT_THAT(ParseError(R"({"matchLabels": {"bad key!": "x"}})").message(),
              HasSubstr("spec.podSelector.matchLabels[bad key!]"));
  EXPECT_THAT(ParseError(R"({"matchLabels": {"app": "spaces are bad"}})").message(),
              HasSubstr("spec.podSelector.matchLabels[app]"));
  EXPECT_THAT(ParseError(R"(["app"])").message(), HasSubstr("spec.podSelector: expected an object, got an array"));
}

}  // namespace
}  // namespace ebpfcni::policy::k8s
