// The compiler on the examples of the Kubernetes NetworkPolicy page
// (https://kubernetes.io/docs/concepts/services-networking/network-policies/)
// and the semantics listed in docs/network-policy.md. Expectations come from
// the documentation, checked through Trace (what the datapath entries allow)
// and, where the exact entries matter, through the compiled rules.
#include "services/policy/compiler/policy_engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/policy/compiler/test_cluster.h"

namespace ebpfcni::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using test_support::TestCluster;

constexpr uint32_t kHost = 1;
// The peer identity of an IPv4 / IPv6 address outside the cluster.
constexpr uint32_t kWorld4 = 9;
constexpr uint32_t kWorld6 = 10;

std::vector<uint32_t> RuleIds(const DirectionTrace& trace) {
  std::vector<uint32_t> ids;
  for (const RuleInfo& rule : trace.allowing_rules) ids.push_back(rule.rule_id);
  return ids;
}

// "test-network-policy": role=db pods of default accept TCP/6379 from
// 172.17.0.0/16 except 172.17.1.0/24, from any pod of namespaces labelled
// project=myproject, and from role=frontend pods of default; they may only
// connect to 10.0.0.0/24 on TCP/5978.
class DocumentationExampleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster.Namespace("default");
    cluster.Namespace("myproject", {{"project", "myproject"}});
    cluster.Namespace("elsewhere", {{"project", "other"}});
    db = cluster.Pod("default", "db", {{"role", "db"}}, "10.244.0.10");
    frontend = cluster.Pod("default", "frontend", {{"role", "frontend"}}, "10.244.0.11");
    backend = cluster.Pod("default", "backend", {{"role", "backend"}}, "10.244.0.12");
    myproject_pod = cluster.Pod("myproject", "tool", {{"app", "tool"}}, "10.244.1.5", /*local=*/false);
    elsewhere_frontend = cluster.Pod("elsewhere", "frontend", {{"role", "frontend"}}, "", /*local=*/false);
    cluster.Policy(R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
      "metadata": {"name": "test-network-policy", "namespace": "default"},
      "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                              {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                              {"podSelector": {"matchLabels": {"role": "frontend"}}}],
                     "ports": [{"protocol": "TCP", "port": 6379}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}]}})");
  }

  TestCluster cluster;
  uint32_t db = 0, frontend = 0, backend = 0, myproject_pod = 0, elsewhere_frontend = 0;
};

TEST_F(DocumentationExampleTest, IngressToDb) {
  EXPECT_TRUE(cluster.IngressAllowed("default", "db", frontend, 6379));
  EXPECT_FALSE(cluster.IngressAllowed("default", "db", frontend, 80)) << "only TCP/6379";
  EXPECT_FALSE(cluster.IngressAllowed("default", "db", frontend, 6379, k8s::kProtocolUdp)) << "only TCP";
  EXPECT_FALSE(cluster.IngressAllowed("default", "db", backend, 6379));
  EXPECT_TRUE(cluster.IngressAllowed("default", "db", myproject_pod, 6379)) << "namespaceSelector";
  EXPECT_FALSE(cluster.IngressAllowed("default", "db", elsewhere_frontend, 6379))
      << "a podSelector alone selects in the policy's own namespace";
  EXPECT_TRUE(cluster.IngressAllowed("default", "db", cluster.CidrIdentity("172.17.0.0/16"), 6379));
  EXPECT_FALSE(cluster.IngressAllowed("default", "db", cluster.CidrIdentity("172.17.1.0/24"), 6379)) << "except";
  EXPECT_FALSE(cluster.IngressAllowed("default", "db", kWorld4, 6379));
  EXPECT_TRUE(cluster.IngressAllowed("default", "db", kHost, 22)) << "the node always reaches its pods";
}

TEST_F(DocumentationExampleTest, EgressFromDb) {
  uint32_t allowed_cidr = cluster.CidrIdentity("10.0.0.0/24");
  EXPECT_TRUE(cluster.EgressAllowed("default", "db", allowed_cidr, 5978));
  EXPECT_FALSE(cluster.EgressAllowed("default", "db", allowed_cidr, 5979));
  EXPECT_FALSE(cluster.EgressAllowed("default", "db", frontend, 5978));
  EXPECT_FALSE(cluster.EgressAllowed("default", "db", kWorld4, 5978));
  EXPECT_TRUE(cluster.EgressAllowed("default", "db", kHost, 5978)) << "traffic to the node is always allowed";
}

TEST_F(DocumentationExampleTest, PodsThePolicyDoesNotSelectAreNotIsolated) {
  const CompiledEndpointPolicy& policy = cluster.PolicyOf("default", "frontend");
  EXPECT_FALSE(policy.ingress_isolated);
  EXPECT_FALSE(policy.egress_isolated);
  EXPECT_THAT(policy.rules, IsEmpty());
  EXPECT_EQ(cluster.Ingress("default", "frontend", backend, 1).decision, TraceDecision::kAllowedNotIsolated);
}

TEST_F(DocumentationExampleTest, CompiledEntries) {
  uint32_t ingress_rule = cluster.Ingress("default", "db", frontend, 6379).allowing_rules.at(0).rule_id;
  uint32_t egress_rule = cluster.Egress("default", "db", cluster.CidrIdentity("10.0.0.0/24"), 5978)
                             .allowing_rules.at(0).rule_id;
  const CompiledEndpointPolicy& policy = cluster.PolicyOf("default", "db");
  EXPECT_TRUE(policy.ingress_isolated);
  EXPECT_TRUE(policy.egress_isolated);
  auto in = [&](uint32_t peer) { return CompiledRule{Direction::kIngress, peer, 6, 6379, 0, ingress_rule}; };
  std::vector<CompiledRule> expected = {
      CompiledRule{Direction::kIngress, kHost, 0, 0, 0, kNodeTrafficRuleId},
      in(frontend),
      in(myproject_pod),
      in(cluster.CidrIdentity("172.17.0.0/16")),
      CompiledRule{Direction::kEgress, kHost, 0, 0, 0, kPodToNodeTrafficRuleId},
      CompiledRule{Direction::kEgress, cluster.CidrIdentity("10.0.0.0/24"), 6, 5978, 0, egress_rule},
  };
  std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) { return a.Key() < b.Key(); });
  EXPECT_EQ(policy.rules, expected);

  auto proto = policy.ToProto();
  EXPECT_TRUE(proto.ingress_isolated());
  EXPECT_TRUE(proto.egress_isolated());
  ASSERT_EQ(proto.rules_size(), 6);
  EXPECT_EQ(proto.rules(1).peer_identity(), frontend);
  EXPECT_EQ(proto.rules(1).direction(), datapath::v1::POLICY_DIRECTION_INGRESS);
  EXPECT_EQ(proto.rules(1).protocol(), 6u);
  EXPECT_EQ(proto.rules(1).port(), 6379u);
  EXPECT_EQ(proto.rules(1).action(), datapath::v1::POLICY_ACTION_ALLOW);
  EXPECT_EQ(proto.rules(1).rule_id(), ingress_rule);
}

TEST_F(DocumentationExampleTest, PrefixIdentitiesAndAddresses) {
  PrefixChanges changes = cluster.engine.TakePrefixChanges();
  EXPECT_EQ(changes.upserts.size(), 3u);
  EXPECT_THAT(changes.deletes, IsEmpty());
  for (const auto& [prefix, id] : changes.upserts) EXPECT_GE(id, kFirstCidrIdentity) << prefix.ToString();
  EXPECT_TRUE(cluster.engine.TakePrefixChanges().empty());

  auto address = [](const char* text) { return *IpAddress::Parse(text); };
  EXPECT_EQ(cluster.engine.IdentityOfAddress(address("172.17.1.9")), cluster.CidrIdentity("172.17.1.0/24"));
  EXPECT_EQ(cluster.engine.IdentityOfAddress(address("172.17.9.9")), cluster.CidrIdentity("172.17.0.0/16"));
  EXPECT_EQ(cluster.engine.IdentityOfAddress(address("8.8.8.8")), kWorld4);
  EXPECT_EQ(cluster.engine.IdentityOfAddress(address("10.244.0.11")), frontend) << "local endpoint";
  EXPECT_EQ(cluster.engine.IdentityOfAddress(address("10.244.1.5")), myproject_pod) << "pod of another node";

  cluster.engine.DeletePolicy("default", "test-network-policy");
  PrefixChanges gone = cluster.engine.TakePrefixChanges();
  EXPECT_THAT(gone.upserts, IsEmpty());
  EXPECT_EQ(gone.deletes.size(), 3u);
  EXPECT_FALSE(cluster.PolicyOf("default", "db").ingress_isolated);
}

TEST_F(DocumentationExampleTest, TraceNamesThePolicyAndRule) {
  DirectionTrace allowed = cluster.Ingress("default", "db", frontend, 6379);
  EXPECT_EQ(allowed.decision, TraceDecision::kAllowedByRule);
  ASSERT_EQ(allowed.allowing_rules.size(), 1u);
  EXPECT_EQ(allowed.allowing_rules[0].policy_namespace, "default");
  EXPECT_EQ(allowed.allowing_rules[0].policy_name, "test-network-policy");
  EXPECT_EQ(allowed.allowing_rules[0].direction, Direction::kIngress);
  EXPECT_EQ(allowed.allowing_rules[0].rule_index, 0u);
  EXPECT_THAT(allowed.isolating_policies, ElementsAre("default/test-network-policy"));

  DirectionTrace denied = cluster.Ingress("default", "db", backend, 6379);
  EXPECT_EQ(denied.decision, TraceDecision::kDeniedDefault);
  EXPECT_THAT(denied.allowing_rules, IsEmpty());
  EXPECT_THAT(denied.isolating_policies, ElementsAre("default/test-network-policy"));

  DirectionTrace node = cluster.Ingress("default", "db", kHost, 6379);
  ASSERT_EQ(node.allowing_rules.size(), 1u);
  EXPECT_EQ(node.allowing_rules[0].rule_id, kNodeTrafficRuleId);
  EXPECT_TRUE(node.allowing_rules[0].implicit());

  // "traffic to and from the node": an egress-isolated pod still reaches it.
  DirectionTrace to_node = cluster.Egress("default", "db", kHost, 10250);
  ASSERT_EQ(to_node.allowing_rules.size(), 1u);
  EXPECT_EQ(to_node.allowing_rules[0].rule_id, kPodToNodeTrafficRuleId);
  EXPECT_TRUE(to_node.allowing_rules[0].implicit());
}

// The "Default policies" section, each in a namespace of its own.
TEST(DefaultPoliciesTest, DefaultDenyIngress) {
  TestCluster cluster;
  cluster.Namespace("x");
  uint32_t a = cluster.Pod("x", "a", {{"app", "a"}});
  uint32_t b = cluster.Pod("x", "b", {{"app", "b"}});
  cluster.Policy(R"({"metadata": {"name": "default-deny-ingress", "namespace": "x"},
                     "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})");
  const CompiledEndpointPolicy& policy = cluster.PolicyOf("x", "a");
  EXPECT_TRUE(policy.ingress_isolated);
  EXPECT_FALSE(policy.egress_isolated) << "egress untouched";
  EXPECT_THAT(policy.rules, ElementsAre(CompiledRule{Direction::kIngress, kHost, 0, 0, 0, kNodeTrafficRuleId}));
  EXPECT_FALSE(cluster.IngressAllowed("x", "a", b, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "b", a, 80));
  EXPECT_EQ(cluster.Egress("x", "a", b, 80).decision, TraceDecision::kAllowedNotIsolated);
}

TEST(DefaultPoliciesTest, AllowAllIngress) {
  TestCluster cluster;
  cluster.Namespace("x");
  uint32_t a = cluster.Pod("x", "a", {{"app", "a"}});
  cluster.Policy(R"({"metadata": {"name": "default-deny-ingress", "namespace": "x"},
                     "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})");
  cluster.Policy(R"({"metadata": {"name": "allow-all-ingress", "namespace": "x"},
                     "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}})");
  const CompiledEndpointPolicy& policy = cluster.PolicyOf("x", "a");
  EXPECT_TRUE(policy.ingress_isolated);
  EXPECT_THAT(policy.rules, ::testing::Contains(Field(&CompiledRule::peer_identity, 0u)));
  EXPECT_TRUE(cluster.IngressAllowed("x", "a", a, 1));
  EXPECT_TRUE(cluster.IngressAllowed("x", "a", kWorld4, 65535, k8s::kProtocolUdp));
  EXPECT_TRUE(cluster.IngressAllowed("x", "a", 12345, 9, 132));
}

TEST(DefaultPoliciesTest, DefaultDenyEgressAndAllowAllEgress) {
  TestCluster cluster;
  cluster.Namespace("x");
  cluster.Namespace("y");
  uint32_t a = cluster.Pod("x", "a", {{"app", "a"}});
  uint32_t b = cluster.Pod("y", "b", {{"app", "b"}});
  cluster.Policy(R"({"metadata": {"name": "default-deny-egress", "namespace": "x"},
                     "spec": {"podSelector": {}, "policyTypes": ["Egress"]}})");
  EXPECT_FALSE(cluster.PolicyOf("x", "a").ingress_isolated);
  EXPECT_TRUE(cluster.PolicyOf("x", "a").egress_isolated);
  EXPECT_THAT(cluster.PolicyOf("x", "a").rules,
              ElementsAre(CompiledRule{Direction::kEgress, kHost, 0, 0, 0, kPodToNodeTrafficRuleId}))
      << "only the implicit pod -> node rule";
  EXPECT_FALSE(cluster.EgressAllowed("x", "a", b, 53, k8s::kProtocolUdp));

  cluster.Policy(R"({"metadata": {"name": "allow-all-egress", "namespace": "y"},
                     "spec": {"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}})");
  EXPECT_TRUE(cluster.PolicyOf("y", "b").egress_isolated);
  EXPECT_TRUE(cluster.EgressAllowed("y", "b", a, 53, k8s::kProtocolUdp));
  EXPECT_TRUE(cluster.EgressAllowed("y", "b", kWorld4, 443));
}

TEST(DefaultPoliciesTest, DefaultDenyAll) {
  TestCluster cluster;
  cluster.Namespace("x");
  uint32_t a = cluster.Pod("x", "a", {{"app", "a"}});
  cluster.Policy(R"({"metadata": {"name": "default-deny-all", "namespace": "x"},
                     "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})");
  EXPECT_TRUE(cluster.PolicyOf("x", "a").ingress_isolated);
  EXPECT_TRUE(cluster.PolicyOf("x", "a").egress_isolated);
  EXPECT_FALSE(cluster.IngressAllowed("x", "a", a, 80));
  EXPECT_FALSE(cluster.EgressAllowed("x", "a", a, 80));
}

// "Targeting a range of ports": egress to 10.0.0.0/24 on TCP 32000-32768.
TEST(PortRangeTest, EndPort) {
  TestCluster cluster;
  cluster.Namespace("default");
  cluster.Pod("default", "db", {{"role", "db"}});
  cluster.Policy(R"({"metadata": {"name": "multi-port-egress", "namespace": "default"},
      "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                    "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}]}]}})");
  uint32_t cidr = cluster.CidrIdentity("10.0.0.0/24");
  const CompiledEndpointPolicy& policy = cluster.PolicyOf("default", "db");
  ASSERT_EQ(policy.rules.size(), 2u) << "the range and the implicit pod -> node rule";
  EXPECT_EQ(policy.rules[0].peer_identity, kHost);
  EXPECT_EQ(policy.rules[1].port, 32000);
  EXPECT_EQ(policy.rules[1].end_port, 32768);
  EXPECT_EQ(policy.ToProto().rules(1).end_port(), 32768u);
  EXPECT_FALSE(cluster.EgressAllowed("default", "db", cidr, 31999));
  EXPECT_TRUE(cluster.EgressAllowed("default", "db", cidr, 32000));
  EXPECT_TRUE(cluster.EgressAllowed("default", "db", cidr, 32500));
  EXPECT_TRUE(cluster.EgressAllowed("default", "db", cidr, 32768));
  EXPECT_FALSE(cluster.EgressAllowed("default", "db", cidr, 32769));
  EXPECT_FALSE(cluster.EgressAllowed("default", "db", cidr, 32500, k8s::kProtocolUdp));
}

// "Behavior of to and from selectors": one peer with both selectors (AND)
// versus two peers (OR).
class AndOrPeersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster.Namespace("x");
    cluster.Namespace("alice-ns", {{"user", "alice"}});
    cluster.Namespace("bob-ns", {{"user", "bob"}});
    cluster.Pod("x", "server", {{"app", "server"}});
    alice_client = cluster.Pod("alice-ns", "client", {{"role", "client"}}, "", false);
    alice_other = cluster.Pod("alice-ns", "other", {{"role", "other"}}, "", false);
    bob_client = cluster.Pod("bob-ns", "client", {{"role", "client"}}, "", false);
    x_client = cluster.Pod("x", "client", {{"role", "client"}});
  }
  TestCluster cluster;
  uint32_t alice_client = 0, alice_other = 0, bob_client = 0, x_client = 0;
};

TEST_F(AndOrPeersTest, BothSelectorsInOnePeerAreAnded) {
  cluster.Policy(R"({"metadata": {"name": "and", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"user": "alice"}}, "podSelector": {"matchLabels": {"role": "client"}}}]}]}})");
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", alice_client, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "server", alice_other, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "server", bob_client, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "server", x_client, 80));
}

TEST_F(AndOrPeersTest, SeparatePeersAreOred) {
  cluster.Policy(R"({"metadata": {"name": "or", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"user": "alice"}}}, {"podSelector": {"matchLabels": {"role": "client"}}}]}]}})");
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", alice_client, 80));
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", alice_other, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "server", bob_client, 80)) << "podSelector alone: own namespace only";
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", x_client, 80));
}

TEST_F(AndOrPeersTest, EmptyNamespaceSelectorMeansEveryNamespace) {
  cluster.Policy(R"({"metadata": {"name": "all-ns", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]}]}})");
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", alice_client, 80));
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", bob_client, 80));
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", x_client, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "server", alice_other, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "server", kHost + 1, 80)) << "world is not a pod";
}

TEST_F(AndOrPeersTest, NamespaceByNameLabelAndExpressions) {
  cluster.Policy(R"({"metadata": {"name": "by-name", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bob-ns"}}},
        {"namespaceSelector": {"matchExpressions": [{"key": "user", "operator": "In", "values": ["alice"]}]},
         "podSelector": {"matchExpressions": [{"key": "role", "operator": "NotIn", "values": ["client"]}]}}]}]}})");
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", bob_client, 80));
  EXPECT_TRUE(cluster.IngressAllowed("x", "server", alice_other, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "server", alice_client, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "server", x_client, 80));
}

TEST(ReservedIdentitiesTest, SelectorsNeverMatchThem) {
  TestCluster cluster;
  cluster.Namespace("x");
  uint32_t a = cluster.Pod("x", "a", {});
  cluster.engine.UpsertIdentity(1, identity::LabelSet({{"reserved", "host", ""}}));
  cluster.engine.UpsertIdentity(2, identity::LabelSet({{"reserved", "world", ""}}));
  cluster.engine.UpsertIdentity(6, identity::LabelSet({{"reserved", "remote-node", ""}}));
  // Even with pod-like labels, a reserved number is not a pod.
  cluster.engine.UpsertIdentity(7, identity::LabelSet({{"k8s", "io.kubernetes.pod.namespace", "x"}}));
  cluster.Policy(R"({"metadata": {"name": "all-pods", "namespace": "x"},
      "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}})");
  std::vector<uint32_t> peers;
  for (const CompiledRule& rule : cluster.PolicyOf("x", "a").rules) peers.push_back(rule.peer_identity);
  EXPECT_THAT(peers, ElementsAre(kHost, a)) << "host only through the implicit node rule";
  EXPECT_FALSE(cluster.IngressAllowed("x", "a", 6, 80));
  EXPECT_FALSE(cluster.IngressAllowed("x", "a", 7, 80));
}

TEST(NamedPortTest, IngressResolvesAgainstTheSelectedPod) {
  TestCluster cluster;
  cluster.Namespace("x");
  uint32_t client = cluster.Pod("x", "client", {{"app", "client"}});
  cluster.Pod("x", "web", {{"app", "web"}}, "", true,
              nlohmann::json::parse(R"([{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53,
                                        "protocol": "UDP"}])"));
  cluster.Pod("x", "web-noport", {{"app", "web"}, {"variant", "bare"}});
  cluster.Policy(R"({"metadata": {"name": "named", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [
        {"port": "http"}, {"port": "dns", "protocol": "UDP"}, {"port": "dns"}]}]}})");
  EXPECT_TRUE(cluster.IngressAllowed("x", "web", client, 8080));
  EXPECT_TRUE(cluster.IngressAllowed("x", "web", client, 53, k8s::kProtocolUdp));
  EXPECT_FALSE(cluster.IngressAllowed("x", "web", client, 53)) << "dns is a UDP port; TCP dns names nothing";
  EXPECT_FALSE(cluster.IngressAllowed("x", "web", client, 80));
  EXPECT_TRUE(cluster.PolicyOf("x", "web-noport").ingress_isolated);
  EXPECT_FALSE(cluster.IngressAllowed("x", "web-noport", client, 8080)) << "no port named http";
}

TEST(NamedPortTest, EgressResolvesPerDestinationPod) {
  TestCluster cluster;
  cluster.Namespace("x");
  cluster.Pod("x", "client", {{"app", "client"}});
  uint32_t a = cluster.Pod("x", "a", {{"app", "a"}, {"tier", "back"}}, "", false,
                           nlohmann::json::parse(R"([{"name": "http", "containerPort": 80}])"));
  uint32_t b = cluster.Pod("x", "b", {{"app", "b"}, {"tier", "back"}}, "", false,
                           nlohmann::json::parse(R"([{"name": "http", "containerPort": 8080}])"));
  uint32_t c = cluster.Pod("x", "c", {{"app", "c"}}, "", false,
                           nlohmann::json::parse(R"([{"name": "http", "containerPort": 9090}])"));
  cluster.Policy(R"({"metadata": {"name": "named-egress", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"tier": "back"}}}], "ports": [{"port": "http"}]}]}})");
  EXPECT_TRUE(cluster.EgressAllowed("x", "client", a, 80));
  EXPECT_FALSE(cluster.EgressAllowed("x", "client", a, 8080)) << "8080 is b's http, not a's";
  EXPECT_TRUE(cluster.EgressAllowed("x", "client", b, 8080));
  EXPECT_FALSE(cluster.EgressAllowed("x", "client", b, 80));
  EXPECT_FALSE(cluster.EgressAllowed("x", "client", c, 9090)) << "c is not a selected peer";

  // A new destination pod with the port under another number adds its entry.
  uint32_t d = cluster.Pod("x", "d", {{"app", "d"}, {"tier", "back"}}, "", false,
                           nlohmann::json::parse(R"([{"name": "http", "containerPort": 8888}])"));
  EXPECT_TRUE(cluster.EgressAllowed("x", "client", d, 8888));

  // Any destination (no "to"): every pod with the port, each on its own number.
  cluster.Policy(R"({"metadata": {"name": "named-egress", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": "http"}]}]}})");
  EXPECT_TRUE(cluster.EgressAllowed("x", "client", c, 9090));
  EXPECT_FALSE(cluster.EgressAllowed("x", "client", c, 80));
  EXPECT_TRUE(cluster.EgressAllowed("x", "client", a, 80));
}

TEST(UnionTest, PoliciesAddUpAndTheLowestRuleIdCarriesASharedEntry) {
  TestCluster cluster;
  cluster.Namespace("x");
  uint32_t client = cluster.Pod("x", "client", {{"app", "client"}});
  uint32_t other = cluster.Pod("x", "other", {{"app", "other"}});
  cluster.Pod("x", "web", {{"app", "web"}});
  cluster.Policy(R"({"metadata": {"name": "first", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}]}})");
  cluster.Policy(R"({"metadata": {"name": "second", "namespace": "x"},
      "spec": {"podSelector": {}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"app": "other"}}}], "ports": [{"port": 443}]},
        {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}]}})");
  EXPECT_TRUE(cluster.IngressAllowed("x", "web", client, 80));
  EXPECT_TRUE(cluster.IngressAllowed("x", "web", other, 443));
  EXPECT_FALSE(cluster.IngressAllowed("x", "web", other, 80));
  DirectionTrace both = cluster.Ingress("x", "web", client, 80);
  ASSERT_EQ(both.allowing_rules.size(), 2u);
  EXPECT_EQ(both.allowing_rules[0].policy_name, "first");
  EXPECT_EQ(both.allowing_rules[1].policy_name, "second");
  EXPECT_EQ(both.allowing_rules[1].rule_index, 1u);
  EXPECT_THAT(both.isolating_policies, ElementsAre("x/first", "x/second"));
  for (const CompiledRule& rule : cluster.PolicyOf("x", "web").rules) {
    if (rule.peer_identity == client) {
      EXPECT_EQ(rule.rule_id, both.allowing_rules[0].rule_id);
    }
  }
}

TEST(IsolationTest, EachDirectionIndependently) {
  TestCluster cluster;
  cluster.Namespace("x");
  uint32_t a = cluster.Pod("x", "a", {{"app", "a"}});
  // Egress only (policyTypes given): ingress stays open.
  cluster.Policy(R"({"metadata": {"name": "egress-only", "namespace": "x"},
      "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}})");
  EXPECT_FALSE(cluster.PolicyOf("x", "a").ingress_isolated);
  EXPECT_TRUE(cluster.PolicyOf("x", "a").egress_isolated);
  EXPECT_TRUE(cluster.EgressAllowed("x", "a", kWorld4, 53, k8s::kProtocolUdp));
  EXPECT_FALSE(cluster.EgressAllowed("x", "a", kWorld4, 53, k8s::kProtocolTcp));
  EXPECT_EQ(cluster.Ingress("x", "a", a, 80).decision, TraceDecision::kAllowedNotIsolated);
  // egress rules without policyTypes: both directions (Ingress is always implied).
  cluster.Policy(R"({"metadata": {"name": "egress-only", "namespace": "x"},
      "spec": {"podSelector": {}, "egress": [{}]}})");
  EXPECT_TRUE(cluster.PolicyOf("x", "a").ingress_isolated);
  EXPECT_TRUE(cluster.PolicyOf("x", "a").egress_isolated);
  // A policy of another namespace never selects it.
  cluster.Namespace("y");
  cluster.Policy(R"({"metadata": {"name": "deny", "namespace": "y"}, "spec": {"podSelector": {}}})");
  EXPECT_THAT(cluster.Ingress("x", "a", a, 80).isolating_policies, ElementsAre("x/egress-only"));
}

TEST(IpBlockTest, ExceptAndNestedPrefixesOfOtherPolicies) {
  TestCluster cluster;
  cluster.Namespace("x");
  cluster.Pod("x", "a", {{"app", "a"}});
  cluster.Pod("x", "b", {{"app", "b"}});
  cluster.Policy(R"({"metadata": {"name": "wide", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]}})");
  // Another policy names a prefix inside a's allowed range: its addresses
  // get their own identity, which a must now allow too.
  cluster.Policy(R"({"metadata": {"name": "narrow", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.2.0.0/16"}}, {"ipBlock": {"cidr": "10.1.5.0/24"}}]}]}})");
  uint32_t wide = cluster.CidrIdentity("10.0.0.0/8");
  uint32_t excepted = cluster.CidrIdentity("10.1.0.0/16");
  uint32_t inside = cluster.CidrIdentity("10.2.0.0/16");
  uint32_t inside_except = cluster.CidrIdentity("10.1.5.0/24");
  EXPECT_TRUE(cluster.EgressAllowed("x", "a", wide, 1));
  EXPECT_TRUE(cluster.EgressAllowed("x", "a", inside, 1));
  EXPECT_FALSE(cluster.EgressAllowed("x", "a", excepted, 1));
  EXPECT_FALSE(cluster.EgressAllowed("x", "a", inside_except, 1)) << "inside the except";
  EXPECT_FALSE(cluster.EgressAllowed("x", "a", kWorld4, 1));
  EXPECT_TRUE(cluster.EgressAllowed("x", "b", inside_except, 1));
  EXPECT_FALSE(cluster.EgressAllowed("x", "b", wide, 1));

  // 0.0.0.0/0 except a range: world plus every listed prefix outside it.
  cluster.Policy(R"({"metadata": {"name": "narrow", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}})");
  EXPECT_TRUE(cluster.EgressAllowed("x", "b", kWorld4, 1));
  EXPECT_FALSE(cluster.EgressAllowed("x", "b", wide, 1));
  EXPECT_FALSE(cluster.EgressAllowed("x", "b", excepted, 1));
  EXPECT_FALSE(cluster.EgressAllowed("x", "b", kWorld6, 1)) << "0.0.0.0/0 is IPv4 only";
  for (const auto& [prefix, id] : cluster.engine.PrefixIdentities()) {
    EXPECT_NE(prefix.length(), 0) << "/0 is world, never a prefix identity";
  }
}

TEST(IpBlockTest, EachFamilysWorldIsItsOwn) {
  // ::/0 must not admit IPv4 addresses outside the cluster (nor 0.0.0.0/0
  // IPv6 ones): the datapath gives a miss its family's world identity.
  TestCluster cluster;
  cluster.Namespace("x");
  cluster.Pod("x", "v6", {{"app", "v6"}});
  cluster.Pod("x", "v4", {{"app", "v4"}});
  cluster.Policy(R"({"metadata": {"name": "v6-out", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "v6"}}, "policyTypes": ["Egress", "Ingress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "::/0"}}]}],
        "ingress": [{"from": [{"ipBlock": {"cidr": "::/0", "except": ["2001:db8::/32"]}}]}]}})");
  cluster.Policy(R"({"metadata": {"name": "v4-out", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "v4"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}})");
  EXPECT_TRUE(cluster.EgressAllowed("x", "v6", kWorld6, 443));
  EXPECT_FALSE(cluster.EgressAllowed("x", "v6", kWorld4, 443));
  EXPECT_TRUE(cluster.IngressAllowed("x", "v6", kWorld6, 443));
  EXPECT_FALSE(cluster.IngressAllowed("x", "v6", kWorld4, 443));
  EXPECT_FALSE(cluster.IngressAllowed("x", "v6", cluster.CidrIdentity("2001:db8::/32"), 443));
  EXPECT_TRUE(cluster.EgressAllowed("x", "v4", kWorld4, 443));
  EXPECT_FALSE(cluster.EgressAllowed("x", "v4", kWorld6, 443));
  auto address = [](const char* text) { return *IpAddress::Parse(text); };
  EXPECT_EQ(cluster.engine.IdentityOfAddress(address("192.0.2.1")), kWorld4);
  EXPECT_EQ(cluster.engine.IdentityOfAddress(address("2001:db9::1")), kWorld6);
}

TEST(RuleIdTest, MapBackStableAcrossUpdatesAndNeverReused) {
  TestCluster cluster;
  cluster.Namespace("x");
  cluster.Pod("x", "a", {{"app", "a"}});
  cluster.Policy(R"({"metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": {},
      "ingress": [{"ports": [{"port": 1}]}, {"ports": [{"port": 2}]}], "egress": [{"ports": [{"port": 3}]}]}})");
  std::vector<PolicySummary> list = cluster.engine.ListPolicies();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_TRUE(list[0].applies_to_ingress);
  EXPECT_TRUE(list[0].applies_to_egress);
  EXPECT_THAT(list[0].selected_endpoints, ElementsAre(TestCluster::Key("x", "a")));
  ASSERT_EQ(list[0].rules.size(), 3u);
  RuleInfo ingress1 = list[0].rules[1];
  RuleInfo egress0 = list[0].rules[2];
  EXPECT_EQ(ingress1.direction, Direction::kIngress);
  EXPECT_EQ(ingress1.rule_index, 1u);
  EXPECT_EQ(ingress1.description, "x/p ingress[1]");
  EXPECT_EQ(egress0.direction, Direction::kEgress);
  EXPECT_EQ(cluster.engine.DescribeRule(ingress1.rule_id), ingress1);
  EXPECT_GE(ingress1.rule_id, kFirstPolicyRuleId);
  EXPECT_EQ(cluster.engine.DescribeRule(kNodeTrafficRuleId)->description, "node traffic to its pods is always allowed");
  EXPECT_EQ(cluster.engine.DescribeRule(999999), std::nullopt);

  // Update: rules still there keep their ids; dropped indexes are forgotten.
  cluster.Policy(R"({"metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": {},
      "ingress": [{"ports": [{"port": 10}]}], "egress": [{"ports": [{"port": 30}]}]}})");
  EXPECT_EQ(cluster.engine.DescribeRule(egress0.rule_id), egress0);
  EXPECT_EQ(cluster.engine.DescribeRule(ingress1.rule_id), std::nullopt);
  EXPECT_EQ(cluster.Egress("x", "a", kWorld4, 30).allowing_rules.at(0).rule_id, egress0.rule_id);

  // Delete then re-create: new ids, so old drop events cannot be misread.
  cluster.engine.DeletePolicy("x", "p");
  EXPECT_EQ(cluster.engine.DescribeRule(egress0.rule_id), std::nullopt);
  EXPECT_THAT(cluster.engine.ListPolicies(), IsEmpty());
  cluster.Policy(R"({"metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": {},
      "egress": [{"ports": [{"port": 3}]}]}})");
  EXPECT_GT(cluster.engine.ListPolicies().at(0).rules.at(0).rule_id, egress0.rule_id);
}

TEST(ComputeForTest, PolicyOfAPodBeforeItsEndpointExists) {
  TestCluster cluster;
  cluster.Namespace("x");
  uint32_t client = cluster.Pod("x", "client", {{"app", "client"}});
  cluster.Policy(R"({"metadata": {"name": "web", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "client"}}}]}]}})");
  uint32_t web = cluster.Pod("x", "web", {{"app", "web"}}, "", /*local=*/false);
  CompiledEndpointPolicy policy = cluster.engine.ComputeFor(web, "x", "web");
  EXPECT_TRUE(policy.ingress_isolated);
  EXPECT_THAT(policy.rules, ElementsAre(Field(&CompiledRule::peer_identity, kHost),
                                        Field(&CompiledRule::peer_identity, client)));
  // Identity not known yet: the Pod object's labels decide.
  cluster.engine.UpsertPod(*k8s::ParsePod(nlohmann::json::parse(
      R"({"metadata": {"name": "web-2", "namespace": "x", "labels": {"app": "web", "new": "label"}}})")));
  EXPECT_TRUE(cluster.engine.ComputeFor(987654, "x", "web-2").ingress_isolated);
  EXPECT_EQ(cluster.engine.TraceFor(web, "x", "web", Direction::kIngress, client, 6, 80).decision,
            TraceDecision::kAllowedByRule);
  EXPECT_EQ(cluster.engine.TraceFor(web, "x", "web", Direction::kIngress, web, 6, 80).decision,
            TraceDecision::kDeniedDefault);
  EXPECT_THAT(RuleIds(cluster.engine.TraceFor(web, "x", "web", Direction::kEgress, client, 6, 80)), IsEmpty());
}

}  // namespace
}  // namespace ebpfcni::policy
