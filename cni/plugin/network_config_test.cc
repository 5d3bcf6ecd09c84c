#include "cni/plugin/network_config.h"

#include <gtest/gtest.h>

#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

int CodeOf(const char* text) {
  absl::StatusOr<NetworkConfig> config = ParseNetworkConfig(text);
  return config.ok() ? 0 : CniCodeFor(config.status());
}

TEST(NetworkConfigTest, Defaults) {
  absl::StatusOr<NetworkConfig> config =
      ParseNetworkConfig(R"({"cniVersion":"1.0.0","name":"k8s","type":"ebpf-cni"})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cni_version, "1.0.0");
  EXPECT_EQ(config->run_dir, "/run/ebpf-cni");
  EXPECT_EQ(config->ipam_socket, "/run/ebpf-cni/ipam.sock");
  EXPECT_EQ(config->datapath_socket, "/run/ebpf-cni/datapath.sock");
  EXPECT_EQ(config->identity_socket, "/run/ebpf-cni/identity.sock");
  EXPECT_EQ(config->policy_socket, "") << "the policy agent is opt-in: no default socket";
  EXPECT_EQ(config->mtu, 1500);
  EXPECT_EQ(config->host_veth_prefix, "ebpf");
  EXPECT_EQ(config->log_file, "/var/log/ebpf-cni.log");
  EXPECT_EQ(config->timeout.count(), 5000);
  EXPECT_FALSE(config->prev_result.has_value());
  EXPECT_FALSE(config->valid_attachments.has_value());
}

TEST(NetworkConfigTest, PluginKeys) {
  absl::StatusOr<NetworkConfig> config = ParseNetworkConfig(R"({
    "cniVersion":"0.4.0","name":"k8s","type":"ebpf-cni","runDir":"/tmp/x","datapathSocket":"/tmp/dp.sock",
    "identitySocket":"unix:/tmp/id.sock","policySocket":"/tmp/policy.sock",
    "mtu":9000,"hostVethPrefix":"lxc","logFile":"/tmp/cni.log","timeoutMs":250,
    "ipam": {"type": "ignored"}, "unknownKey": [1,2,3]})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ipam_socket, "/tmp/x/ipam.sock");
  EXPECT_EQ(config->datapath_socket, "/tmp/dp.sock");
  EXPECT_EQ(config->identity_socket, "unix:/tmp/id.sock");
  EXPECT_EQ(config->policy_socket, "/tmp/policy.sock");
  EXPECT_EQ(config->mtu, 9000);
  EXPECT_EQ(config->host_veth_prefix, "lxc");
  EXPECT_EQ(config->log_file, "/tmp/cni.log");
  EXPECT_EQ(config->timeout.count(), 250);
}

TEST(NetworkConfigTest, DecodingFailuresAreCode6) {
  EXPECT_EQ(CodeOf(""), code::kDecodingFailure);
  EXPECT_EQ(CodeOf("{"), code::kDecodingFailure);
  EXPECT_EQ(CodeOf("[1]"), code::kDecodingFailure);
  EXPECT_EQ(CodeOf(R"({"cniVersion":"1.0.0","name":"n","type":"t","prevResult":{"ips":[{"address":"x"}]}})"),
            code::kDecodingFailure);
}

TEST(NetworkConfigTest, VersionProblemsAreCode1) {
  EXPECT_EQ(CodeOf(R"({"name":"n","type":"t"})"), code::kIncompatibleVersion);
  EXPECT_EQ(CodeOf(R"({"cniVersion":"","name":"n","type":"t"})"), code::kIncompatibleVersion);
  EXPECT_EQ(CodeOf(R"({"cniVersion":"0.2.0","name":"n","type":"t"})"), code::kIncompatibleVersion);
  EXPECT_EQ(CodeOf(R"({"cniVersion":"9.9.9","name":"n","type":"t"})"), code::kIncompatibleVersion);
  EXPECT_EQ(CodeOf(R"({"cniVersion":1,"name":"n","type":"t"})"), code::kIncompatibleVersion);
}

TEST(NetworkConfigTest, BadValuesAreCode7) {
  for (const char* bad : {
           R"({"cniVersion":"1.0.0","type":"t"})",
           R"({"cniVersion":"1.0.0","name":"n"})",
           R"({"cniVersion":"1.0.0","name":5,"type":"t"})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","mtu":"1500"})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","mtu":1.5})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","mtu":67})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","mtu":70000})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","timeoutMs":0})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","timeoutMs":3600000})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","runDir":""})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","ipamSocket":["x"]})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","policySocket":true})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","hostVethPrefix":"waytoolong"})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","hostVethPrefix":"a/b"})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","hostVethPrefix":""})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":[]})",
           R"({"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/valid-attachments":{}})",
           R"({"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/valid-attachments":[{"containerID":"a"}]})",
       }) {
    EXPECT_EQ(CodeOf(bad), code::kInvalidNetworkConfig) << bad;
  }
}

TEST(NetworkConfigTest, RuntimeConfigKeysAreCaseInsensitive) {
  for (const char* text : {
           R"({"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{"portMappings":[{"hostPort":80}]}})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{"PortMappings":[{"hostPort":80}]}})",
           R"({"cniVersion":"1.0.0","name":"n","type":"t","RuntimeConfig":{"portmappings":[{"hostPort":80}]}})",
       }) {
    absl::StatusOr<NetworkConfig> config = ParseNetworkConfig(text);
    ASSERT_TRUE(config.ok()) << config.status();
    ASSERT_TRUE(config->runtime_config.port_mappings.is_array()) << text;
    EXPECT_EQ(config->runtime_config.port_mappings[0]["hostPort"], 80);
    EXPECT_TRUE(config->runtime_config.unsupported_requests.empty());
  }
}

TEST(NetworkConfigTest, CapabilitiesWeCannotHonourAreRecorded) {
  absl::StatusOr<NetworkConfig> config = ParseNetworkConfig(
      R"({"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{"IPs":["10.0.0.9/24"],"mac":"","bandwidth":{"ingressRate":1}}})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->runtime_config.unsupported_requests, std::vector<std::string>{"ips"});
  EXPECT_EQ(config->runtime_config.bandwidth["ingressRate"], 1);
}

TEST(NetworkConfigTest, ValidAttachmentsFromBothKeys) {
  absl::StatusOr<NetworkConfig> config = ParseNetworkConfig(R"({
    "cniVersion":"1.1.0","name":"n","type":"t",
    "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth0"}],
    "cni.dev/attachments":[{"containerID":"b","ifname":"eth0"},{"containerID":"c","ifname":"net1"}]})");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->valid_attachments.has_value());
  EXPECT_EQ(*config->valid_attachments,
            (std::vector<AttachmentRef>{{"a", "eth0"}, {"b", "eth0"}, {"c", "net1"}}));

  config = ParseNetworkConfig(R"({"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/attachments":[]})");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->valid_attachments.has_value());
  EXPECT_TRUE(config->valid_attachments->empty());
}

TEST(NetworkConfigTest, PrevResultIsDecoded) {
  absl::StatusOr<NetworkConfig> config = ParseNetworkConfig(R"({
    "cniVersion":"1.0.0","name":"n","type":"t",
    "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"h"},{"name":"eth0","sandbox":"/x"}],
                  "ips":[{"address":"10.0.0.2/32","gateway":"10.0.0.1","interface":1}]}})");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->prev_result.has_value());
  EXPECT_EQ(config->prev_result->ips[0].address.ToString(), "10.0.0.2/32");
}

TEST(NetworkConfigTest, CniVersionForErrors) {
  EXPECT_EQ(CniVersionForErrors(R"({"cniVersion":"0.3.1"})"), "0.3.1");
  EXPECT_EQ(CniVersionForErrors(R"({"cniVersion":"0.1.0"})"), "1.1.0");
  EXPECT_EQ(CniVersionForErrors("not json"), "1.1.0");
}

}  // namespace
}  // namespace ebpfcni::cni
