#include "services/identity/labels.h"

#include <gtest/gtest.h>

namespace ebpfcni::identity {
namespace {

TEST(LabelSetTest, CanonicalFormIsSortedAndDeduplicated) {
  LabelSet a({{"k8s", "tier", "db"}, {"k8s", "app", "web"}, {"k8s", "app", "api"}});
  EXPECT_EQ(a.Key(), "k8s:app=api;k8s:tier=db");  // last value of a duplicate wins
  LabelSet b({{"k8s", "tier", "db"}, {"k8s", "app", "api"}});
  EXPECT_EQ(a, b);
}

TEST(LabelSetTest, KeyRoundTrips) {
  LabelSet a({{"k8s", "app", "web"}, {"k8s", "io.kubernetes.pod.namespace", "prod"}, {"k8s", "empty", ""}});
  auto parsed = LabelSet::ParseKey(a.Key());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, a);
  EXPECT_FALSE(LabelSet::ParseKey("no-colon=1").ok());
}

TEST(LabelSetTest, PodLabelSetIncludesNamespaceNameAndLabels) {
  auto set = PodLabelSet("prod", {{"app", "web"}}, {{"team", "a"}});
  EXPECT_EQ(set.Key(),
            "k8s:app=web;k8s:io.kubernetes.pod.namespace=prod;k8s:io.kubernetes.pod.namespace.labels.team=a");
}

TEST(LabelValidationTest, AcceptsKubernetesLabelsAndRejectsOthers) {
  EXPECT_TRUE(ValidateLabel({"k8s", "app.kubernetes.io/name", "web-1"}).ok());
  EXPECT_TRUE(ValidateLabel({"k8s", "app", ""}).ok());
  EXPECT_FALSE(ValidateLabel({"k8s", "", "x"}).ok());
  EXPECT_FALSE(ValidateLabel({"k8s", "app", "a;b"}).ok());
  EXPECT_FALSE(ValidateLabel({"k8s", "Bad_Prefix/app", "x"}).ok());
  EXPECT_FALSE(ValidateLabel({"k8s", "app", std::string(64, 'a')}).ok());
  EXPECT_FALSE(ValidateLabel({"", "app", "x"}).ok());
}

}  // namespace
}  // namespace ebpfcni::identity
