#include "services/identity/label_filter.h"

#include <gtest/gtest.h>

namespace ebpfcni::identity {
namespace {

TEST(LabelFilterTest, DefaultDropsPerInstanceLabels) {
  auto filter = LabelFilter::Default();
  LabelSet pod({{"k8s", "app", "web"},
                {"k8s", "pod-template-hash", "7d4b9c"},
                {"k8s", "controller-revision-hash", "abc"},
                {"k8s", "statefulset.kubernetes.io/pod-name", "db-0"},
                {"k8s", "batch.kubernetes.io/job-completion-index", "3"},
                {"k8s", "io.kubernetes.pod.namespace", "prod"},
                {"k8s", "io.kubernetes.pod.namespace.labels.team", "a"}});
  EXPECT_EQ(filter.Filter(pod).Key(),
            "k8s:app=web;k8s:io.kubernetes.pod.namespace=prod;k8s:io.kubernetes.pod.namespace.labels.team=a");
}

TEST(LabelFilterTest, TwoReplicasOfADeploymentShareTheFilteredSet) {
  auto filter = LabelFilter::Default();
  LabelSet a({{"k8s", "app", "web"}, {"k8s", "pod-template-hash", "1"}});
  LabelSet b({{"k8s", "app", "web"}, {"k8s", "pod-template-hash", "2"}});
  EXPECT_EQ(filter.Filter(a), filter.Filter(b));
}

TEST(LabelFilterTest, InclusivePatternsKeepOnlyMatchesPlusNamespace) {
  auto filter = LabelFilter::FromPatterns({"app", "!app\\.debug"});
  ASSERT_TRUE(filter.ok());
  LabelSet pod({{"k8s", "app", "web"}, {"k8s", "app.debug", "1"}, {"k8s", "tier", "x"},
                {"k8s", "io.kubernetes.pod.namespace", "ns"}});
  EXPECT_EQ(filter->Filter(pod).Key(), "k8s:app=web;k8s:io.kubernetes.pod.namespace=ns");
}

TEST(LabelFilterTest, RejectsBadRegex) {
  auto filter = LabelFilter::FromPatterns({"!(unclosed"});
  EXPECT_FALSE(filter.ok());
  EXPECT_NE(filter.status().message().find("(unclosed"), std::string::npos);
}

}  // namespace
}  // namespace ebpfcni::identity
