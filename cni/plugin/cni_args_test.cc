#include "cni/plugin/cni_args.h"

#include <gtest/gtest.h>

#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

TEST(CniArgsTest, EmptyIsFine) {
  absl::StatusOr<CniArgs> args = ParseCniArgs("");
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_FALSE(args->ignore_unknown);
  EXPECT_EQ(args->pod_name, "");
}

TEST(CniArgsTest, ContainerdStyle) {
  absl::StatusOr<CniArgs> args = ParseCniArgs(
      "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;"
      "K8S_POD_UID=1f2e-33");
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_TRUE(args->ignore_unknown);
  EXPECT_EQ(args->pod_namespace, "default");
  EXPECT_EQ(args->pod_name, "web-0");
  EXPECT_EQ(args->pod_infra_container_id, "abc123");
  EXPECT_EQ(args->pod_uid, "1f2e-33");
}

TEST(CniArgsTest, KeysAreCaseInsensitiveValuesAreNot) {
  absl::StatusOr<CniArgs> args = ParseCniArgs("ignoreunknown=TRUE;k8s_pod_namespace=Kube-System;K8s_Pod_Name=DNS");
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_TRUE(args->ignore_unknown);
  EXPECT_EQ(args->pod_namespace, "Kube-System");
  EXPECT_EQ(args->pod_name, "DNS");
}

TEST(CniArgsTest, UnknownKeyRejectedWithoutIgnoreUnknown) {
  absl::StatusOr<CniArgs> args = ParseCniArgs("K8S_POD_NAME=a;FOO=bar");
  ASSERT_FALSE(args.ok());
  EXPECT_EQ(CniCodeFor(args.status()), code::kInvalidEnvironment);
  EXPECT_NE(args.status().message().find("FOO"), absl::string_view::npos) << args.status();
}

TEST(CniArgsTest, UnknownKeyAcceptedWithIgnoreUnknownAnywhereInTheList) {
  absl::StatusOr<CniArgs> args = ParseCniArgs("FOO=bar;K8S_POD_NAME=a;IgnoreUnknown=true");
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->pod_name, "a");
}

TEST(CniArgsTest, IgnoreUnknownFalseStillRejects) {
  EXPECT_FALSE(ParseCniArgs("IgnoreUnknown=0;FOO=bar").ok());
}

TEST(CniArgsTest, BadPairs) {
  for (const char* bad : {"K8S_POD_NAME", "=value", "IgnoreUnknown=maybe", "K8S_POD_NAME=a;k8s_pod_name=b"}) {
    absl::StatusOr<CniArgs> args = ParseCniArgs(bad);
    ASSERT_FALSE(args.ok()) << bad;
    EXPECT_EQ(CniCodeFor(args.status()), code::kInvalidEnvironment) << bad;
  }
}

TEST(CniArgsTest, ValueMayContainEqualsAndEmptyItemsAreSkipped) {
  absl::StatusOr<CniArgs> args = ParseCniArgs(";K8S_POD_NAME=a=b;;");
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->pod_name, "a=b");
}

}  // namespace
}  // namespace ebpfcni::cni
