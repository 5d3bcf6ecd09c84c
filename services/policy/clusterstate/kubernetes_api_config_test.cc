#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <absl/strings/escaping.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_replace.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/policy/clusterstate/kubernetes_api_source.h"
#include "services/policy/clusterstate/testing/scoped_test_directory.h"

namespace ebpfcni::policy {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class KubernetesApiConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(dir_ / "certs"); }
  std::string Write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name) << content;
    return (dir_ / name).string();
  }
  testing::ScopedTestDirectory scoped_dir_;
  const fs::path dir_ = scoped_dir_.path();
};

constexpr char kKubeconfig[] = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster:
    server: https://dev.example:6443
    certificate-authority: certs/ca.crt
- name: prod-cluster
  cluster:
    server: https://prod.example:443/
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    insecure-skip-tls-verify: false
users:
- name: dev-user
  user:
    client-certificate: certs/client.crt
    client-key: /abs/client.key
- name: prod-user
  user:
    tokenFile: token
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
- name: sso-user
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: kubelogin
contexts:
- name: dev
  context: {cluster: dev-cluster, user: dev-user, namespace: default}
- name: prod
  context: {cluster: prod-cluster, user: prod-user}
- name: sso
  context: {cluster: dev-cluster, user: sso-user}
- name: broken
  context: {cluster: nowhere, user: dev-user}
)";

TEST_F(KubernetesApiConfigTest, CurrentContextWithPathsRelativeToTheKubeconfig) {
  std::string path = Write("config", kKubeconfig);
  absl::StatusOr<KubernetesApiConfig> config = KubernetesApiConfig::FromKubeconfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://dev.example:6443");
  EXPECT_EQ(config->ca_file, (dir_ / "certs/ca.crt").string());
  EXPECT_EQ(config->client_cert_file, (dir_ / "certs/client.crt").string());
  EXPECT_EQ(config->client_key_file, "/abs/client.key");
  EXPECT_TRUE(config->token.empty());
  EXPECT_FALSE(config->insecure_skip_tls_verify);
}

TEST_F(KubernetesApiConfigTest, NamedContextWithEmbeddedData) {
  std::string path = Write("config", kKubeconfig);
  absl::StatusOr<KubernetesApiConfig> config = KubernetesApiConfig::FromKubeconfig(path, "prod");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://prod.example:443");
  EXPECT_EQ(config->ca_data, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(config->client_cert_data, "cert");
  EXPECT_EQ(config->client_key_data, "key");
  EXPECT_EQ(config->token_file, (dir_ / "token").string());
}

TEST_F(KubernetesApiConfigTest, ClearErrors) {
  std::string path = Write("config", kKubeconfig);
  absl::StatusOr<KubernetesApiConfig> missing_context = KubernetesApiConfig::FromKubeconfig(path, "staging");
  ASSERT_FALSE(missing_context.ok());
  EXPECT_EQ(missing_context.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing_context.status().message()), HasSubstr("no contexts entry named \"staging\""));

  absl::StatusOr<KubernetesApiConfig> missing_cluster = KubernetesApiConfig::FromKubeconfig(path, "broken");
  ASSERT_FALSE(missing_cluster.ok());
  EXPECT_THAT(std::string(missing_cluster.status().message()), HasSubstr("no clusters entry named \"nowhere\""));

  absl::StatusOr<KubernetesApiConfig> exec = KubernetesApiConfig::FromKubeconfig(path, "sso");
  ASSERT_FALSE(exec.ok());
  EXPECT_EQ(exec.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(exec.status().message()), HasSubstr("exec"));

  absl::StatusOr<KubernetesApiConfig> no_file = KubernetesApiConfig::FromKubeconfig((dir_ / "nope").string());
  ASSERT_FALSE(no_file.ok());
  EXPECT_EQ(no_file.status().code(), absl::StatusCode::kNotFound);

  std::string bad = Write("bad", "clusters: [\n");
  absl::StatusOr<KubernetesApiConfig> syntax = KubernetesApiConfig::FromKubeconfig(bad);
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(syntax.status().message()), HasSubstr(bad + ":"));

  std::string bad_base64 = Write("b64", absl::StrReplaceAll(kKubeconfig, {{"Y2VydA==", "not*base64"}}));
  absl::StatusOr<KubernetesApiConfig> base64 = KubernetesApiConfig::FromKubeconfig(bad_base64, "prod");
  ASSERT_FALSE(base64.ok());
  EXPECT_THAT(std::string(base64.status().message()), HasSubstr("client-certificate-data is not valid base64"));
}

TEST_F(KubernetesApiConfigTest, InClusterNeedsTheEnvironmentAndTheToken) {
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  absl::StatusOr<KubernetesApiConfig> outside = KubernetesApiConfig::InCluster(dir_.string());
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(outside.status().message()), HasSubstr("KUBERNETES_SERVICE_HOST"));

  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  absl::StatusOr<KubernetesApiConfig> no_token = KubernetesApiConfig::InCluster(dir_.string());
  EXPECT_EQ(no_token.status().code(), absl::StatusCode::kNotFound);
  Write("token", "t");
  absl::StatusOr<KubernetesApiConfig> config = KubernetesApiConfig::InCluster(dir_.string());
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://[fd00::1]:443");  // IPv6 service address in brackets
  EXPECT_EQ(config->token_file, (dir_ / "token").string());
  EXPECT_TRUE(config->ca_file.empty());  // no ca.crt there
}

}  // namespace
}  // namespace ebpfcni::policy
