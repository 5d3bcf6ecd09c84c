#include "services/policy/k8s/objects.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ebpfcni::policy::k8s {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

NetworkPolicy Policy(const char* spec) {
  auto object = nlohmann::json::parse(
      std::string(R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"name": "p", "namespace": "x"}, "spec": )") + spec + "}");
  auto policy = ParseNetworkPolicy(object);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return policy.ok() ? *policy : NetworkPolicy();
}

std::string PolicyError(const char* spec) {
  auto object = nlohmann::json::parse(std::string(R"({"metadata": {"name": "p"}, "spec": )") + spec + "}");
  auto policy = ParseNetworkPolicy(object);
  EXPECT_FALSE(policy.ok());
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(policy.status().message());
}

IpPrefix Prefix(const char* text) { return *IpPrefix::Parse(text); }

TEST(ParsePodTest, ReadsLabelsPortsAddressesAndNode) {
  auto pod = ParsePod(nlohmann::json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web", "pod-template-hash": "abc"}},
    "spec": {"nodeName": "node-a",
      "initContainers": [{"name": "proxy", "ports": [{"name": "admin", "containerPort": 9901}]}],
      "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080},
                                             {"containerPort": 53, "protocol": "UDP"},
                                             {"name": "sctp-port", "containerPort": 9000, "protocol": "SCTP"}]}]},
    "status": {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::0005"}]}})"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->namespace_name, "shop");
  EXPECT_EQ(pod->name, "web-1");
  EXPECT_EQ(pod->labels, (Labels{{"app", "web"}, {"pod-template-hash", "abc"}}));
  EXPECT_EQ(pod->node_name, "node-a");
  EXPECT_THAT(pod->ports, ElementsAre(ContainerPort{"http", 8080, kProtocolTcp}, ContainerPort{"", 53, kProtocolUdp},
                                      ContainerPort{"sctp-port", 9000, kProtocolSctp},
                                      ContainerPort{"admin", 9901, kProtocolTcp}));
  EXPECT_THAT(pod->pod_ips, ElementsAre("10.0.0.5", "fd00::5"));
}

TEST(ParsePodTest, MissingNamespaceIsDefault) {
  auto pod = ParsePod(nlohmann::json::parse(R"({"metadata": {"name": "a"}})"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->namespace_name, "default");
}

TEST(ParsePodTest, ErrorsNameTheField) {
  auto bad_port = ParsePod(nlohmann::json::parse(
      R"({"metadata": {"name": "a"}, "spec": {"containers": [{"ports": [{"containerPort": 70000}]}]}})"));
  EXPECT_THAT(bad_port.status().message(), HasSubstr("spec.containers[0].ports[0].containerPort: must be between 1 and 65535"));
  auto bad_ip = ParsePod(nlohmann::json::parse(R"({"metadata": {"name": "a"}, "status": {"podIPs": [{"ip": "x"}]}})"));
  EXPECT_THAT(bad_ip.status().message(), HasSubstr("status.podIPs[0].ip: invalid IP address"));
  auto no_name = ParsePod(nlohmann::json::parse(R"({"metadata": {"namespace": "a"}})"));
  EXPECT_EQ(no_name.status().message(), "metadata.name: required");
  auto bad_protocol = ParsePod(nlohmann::json::parse(
      R"({"metadata": {"name": "a"}, "spec": {"containers": [{"ports": [{"containerPort": 1, "protocol": "tcp"}]}]}})"));
  EXPECT_THAT(bad_protocol.status().message(), HasSubstr("spec.containers[0].ports[0].protocol: unsupported value \"tcp\""));
}

TEST(ParseNamespaceTest, AlwaysCarriesItsNameLabel) {
  auto ns = ParseNamespace(nlohmann::json::parse(
      R"({"metadata": {"name": "prod", "labels": {"team": "a", "kubernetes.io/metadata.name": "spoofed"}}})"));
  ASSERT_TRUE(ns.ok()) << ns.status();
  EXPECT_EQ(ns->labels, (Labels{{"kubernetes.io/metadata.name", "prod"}, {"team", "a"}}));
  auto bare = ParseNamespace(nlohmann::json::parse(R"({"metadata": {"name": "dev"}})"));
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->labels, (Labels{{"kubernetes.io/metadata.name", "dev"}}));
}

// The "test-network-policy" example of the Kubernetes documentation.
TEST(ParseNetworkPolicyTest, DocumentationExample) {
  NetworkPolicy policy = Policy(R"({
    "podSelector": {"matchLabels": {"role": "db"}},
    "policyTypes": ["Ingress", "Egress"],
    "ingress": [{"from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                          {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                          {"podSelector": {"matchLabels": {"role": "frontend"}}}],
                 "ports": [{"protocol": "TCP", "port": 6379}]}],
    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}]})");
  EXPECT_EQ(policy.namespace_name, "x");
  EXPECT_EQ(policy.name, "p");
  EXPECT_EQ(policy.pod_selector, LabelSelector::FromMatchLabels({{"role", "db"}}));
  EXPECT_TRUE(policy.applies_to_ingress);
  EXPECT_TRUE(policy.applies_to_egress);
  ASSERT_EQ(policy.ingress.size(), 1u);
  ASSERT_EQ(policy.ingress[0].peers.size(), 3u);
  EXPECT_EQ(policy.ingress[0].peers[0].ip_block, (IpBlock{Prefix("172.17.0.0/16"), {Prefix("172.17.1.0/24")}}));
  EXPECT_EQ(policy.ingress[0].peers[1].namespace_selector, LabelSelector::FromMatchLabels({{"project", "myproject"}}));
  EXPECT_FALSE(policy.ingress[0].peers[1].pod_selector.has_value());
  EXPECT_EQ(policy.ingress[0].peers[2].pod_selector, LabelSelector::FromMatchLabels({{"role", "frontend"}}));
  EXPECT_THAT(policy.ingress[0].ports, ElementsAre(NetworkPolicyPort{kProtocolTcp, 6379, "", 0}));
  ASSERT_EQ(policy.egress.size(), 1u);
  EXPECT_THAT(policy.egress[0].ports, ElementsAre(NetworkPolicyPort{kProtocolTcp, 5978, "", 0}));
}

TEST(ParseNetworkPolicyTest, PolicyTypesDefaults) {
  NetworkPolicy ingress_only = Policy(R"({"podSelector": {}})");
  EXPECT_TRUE(ingress_only.applies_to_ingress);
  EXPECT_FALSE(ingress_only.applies_to_egress);
  NetworkPolicy with_egress = Policy(R"({"podSelector": {}, "egress": [{}]})");
  EXPECT_TRUE(with_egress.applies_to_ingress);
  EXPECT_TRUE(with_egress.applies_to_egress);
  // SetDefaults_NetworkPolicy: Egress only when spec.egress has rules.
  NetworkPolicy empty_egress = Policy(R"({"podSelector": {}, "egress": []})");
  EXPECT_FALSE(empty_egress.applies_to_egress);
  NetworkPolicy egress_only = Policy(R"({"podSelector": {}, "policyTypes": ["Egress"]})");
  EXPECT_FALSE(egress_only.applies_to_ingress);
  EXPECT_TRUE(egress_only.applies_to_egress);
}

TEST(ParseNetworkPolicyTest, PortsNamedRangedAndDefaults) {
  NetworkPolicy policy = Policy(R"({"podSelector": {}, "ingress": [{"ports": [
      {"port": "http"}, {"protocol": "UDP"}, {"port": 32000, "endPort": 32768}, {"port": "8080"},
      {"protocol": "SCTP", "port": 9, "endPort": 9}]}, {}]})");
  ASSERT_EQ(policy.ingress.size(), 2u);
  EXPECT_THAT(policy.ingress[0].ports,
              ElementsAre(NetworkPolicyPort{kProtocolTcp, 0, "http", 0}, NetworkPolicyPort{kProtocolUdp, 0, "", 0},
                          NetworkPolicyPort{kProtocolTcp, 32000, "", 32768}, NetworkPolicyPort{kProtocolTcp, 8080, "", 0},
                          NetworkPolicyPort{kProtocolSctp, 9, "", 0}));
  EXPECT_TRUE(policy.ingress[1].peers.empty());
  EXPECT_TRUE(policy.ingress[1].ports.empty());
}

TEST(ParseNetworkPolicyTest, PeerWithBothSelectors) {
  NetworkPolicy policy = Policy(R"({"podSelector": {}, "ingress": [{"from": [
      {"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}}]}]})");
  ASSERT_EQ(policy.ingress[0].peers.size(), 1u);
  EXPECT_EQ(policy.ingress[0].peers[0].namespace_selector, LabelSelector());
  EXPECT_EQ(policy.ingress[0].peers[0].pod_selector, LabelSelector::FromMatchLabels({{"a", "b"}}));
}

TEST(ParseNetworkPolicyTest, ValidationErrorsNameTheField) {
  EXPECT_EQ(PolicyError(R"({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}},
      {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Contains", "values": ["b"]}]}}]}]})"),
            "spec.ingress[0].from[1].podSelector.matchExpressions[0].operator: unknown operator \"Contains\" "
            "(supported: In, NotIn, Exists, DoesNotExist)");
  EXPECT_THAT(PolicyError(R"({"ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
      {"key": "a", "operator": "In"}]}}]}]})"),
              HasSubstr("spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must be specified"));
  EXPECT_EQ(PolicyError(R"({"egress": [{"to": [{}]}]})"), "spec.egress[0].to[0]: must specify a peer");
  EXPECT_EQ(PolicyError(R"({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]})"),
            "spec.ingress[0].from[0]: may not specify both ipBlock and another peer");
  EXPECT_THAT(PolicyError(R"({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]})"),
              HasSubstr("spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR \"10.0.0.0/33\""));
  EXPECT_THAT(PolicyError(R"({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]})"),
              HasSubstr("spec.ingress[0].from[0].ipBlock.except[0]: \"11.0.0.0/16\" must be a strict subset of `cidr`"));
  EXPECT_THAT(PolicyError(R"({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]})"),
              HasSubstr("strict subset"));
  EXPECT_THAT(PolicyError(R"({"ingress": [{"from": [{"ipBlock": {}}]}]})"), HasSubstr("spec.ingress[0].from[0].ipBlock.cidr: required"));
  EXPECT_THAT(PolicyError(R"({"ingress": [{"ports": [{"protocol": "ICMP"}]}]})"),
              HasSubstr("spec.ingress[0].ports[0].protocol: unsupported value \"ICMP\""));
  EXPECT_THAT(PolicyError(R"({"ingress": [{"ports": [{"port": 0}]}]})"),
              HasSubstr("spec.ingress[0].ports[0].port: must be between 1 and 65535"));
  EXPECT_THAT(PolicyError(R"({"ingress": [{"ports": [{"port": "Bad_Name"}]}]})"),
              HasSubstr("spec.ingress[0].ports[0].port: \"Bad_Name\" must be at most 15 characters"));
  EXPECT_THAT(PolicyError(R"({"ingress": [{"ports": [{"port": [80]}]}]})"),
              HasSubstr("spec.ingress[0].ports[0].port: expected an integer or a string, got an array"));
  EXPECT_EQ(PolicyError(R"({"egress": [{"ports": [{"port": "http", "endPort": 90}]}]})"),
            "spec.egress[0].ports[0].endPort: may not be specified when `port` is non-numeric");
  EXPECT_EQ(PolicyError(R"({"egress": [{"ports": [{"endPort": 90}]}]})"),
            "spec.egress[0].ports[0].endPort: may not be specified when `port` is not specified");
  EXPECT_EQ(PolicyError(R"({"egress": [{"ports": [{"port": 100, "endPort": 90}]}]})"),
            "spec.egress[0].ports[0].endPort: must be greater than or equal to `port`");
  EXPECT_THAT(PolicyError(R"({"policyTypes": ["Ingress", "Sideways"]})"),
              HasSubstr("spec.policyTypes[1]: unsupported value \"Sideways\""));
  EXPECT_THAT(PolicyError(R"({"podSelector": []})"), HasSubstr("spec.podSelector: expected an object, got an array"));
  EXPECT_THAT(PolicyError(R"({"ingress": {"from": []}})"), HasSubstr("spec.ingress: expected an array, got an object"));
}

}  // namespace
}  // namespace ebpfcni::policy::k8s
