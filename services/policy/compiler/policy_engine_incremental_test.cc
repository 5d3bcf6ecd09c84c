// Incrementality: which endpoints a change recomputes and dirties. The
// agent pushes exactly TakeDirtyEndpoints() to the datapath, so these are
// the kernel writes a change costs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/policy/compiler/policy_engine.h"
#include "services/policy/compiler/test_cluster.h"

namespace ebpfcni::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using test_support::TestCluster;

EndpointKey Key(const char* ns, const char* name) { return TestCluster::Key(ns, name); }

// Namespaces x and y; in x: web (app=web), db (app=db), client (app=client);
// in y: client. web accepts app=client of x and any pod of y; db accepts web.
class IncrementalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster.Namespace("x", {{"team", "x"}});
    cluster.Namespace("y", {{"team", "y"}});
    web = cluster.Pod("x", "web", {{"app", "web"}}, "10.0.0.1");
    db = cluster.Pod("x", "db", {{"app", "db"}}, "10.0.0.2");
    client = cluster.Pod("x", "client", {{"app", "client"}}, "10.0.0.3");
    y_client = cluster.Pod("y", "client", {{"app", "client"}}, "10.0.0.4");
    cluster.Policy(R"({"metadata": {"name": "web", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [
          {"podSelector": {"matchLabels": {"app": "client"}}},
          {"namespaceSelector": {"matchLabels": {"team": "y"}}}], "ports": [{"port": 80}]}]}})");
    cluster.Policy(R"({"metadata": {"name": "db", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [
          {"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}]}})");
    cluster.engine.TakeDirtyEndpoints();
    cluster.engine.TakePrefixChanges();
  }

  uint64_t Computations() const { return cluster.engine.Stats().endpoint_computations; }

  TestCluster cluster;
  uint32_t web = 0, db = 0, client = 0, y_client = 0;
};

TEST_F(IncrementalTest, NewPodWithAnExistingIdentityDirtiesOnlyItself) {
  uint64_t before = Computations();
  uint64_t generation = cluster.engine.generation();
  CompiledEndpointPolicy web_before = cluster.PolicyOf("x", "web");
  uint32_t id = cluster.Pod("x", "client-2", {{"app", "client"}}, "10.0.0.5");
  EXPECT_EQ(id, client) << "same labels, same identity";
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "client-2")));
  EXPECT_EQ(Computations() - before, 1u) << "no other endpoint was even recomputed";
  EXPECT_EQ(cluster.PolicyOf("x", "web"), web_before);
  EXPECT_GT(cluster.engine.generation(), generation);

  // A second web replica gets web's policy, and nothing else moves.
  before = Computations();
  cluster.Pod("x", "web-2", {{"app", "web"}}, "10.0.0.6");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "web-2")));
  EXPECT_EQ(Computations() - before, 1u);
  EXPECT_EQ(cluster.PolicyOf("x", "web-2"), cluster.PolicyOf("x", "web"));
}

TEST_F(IncrementalTest, NewIdentityDirtiesOnlyEndpointsWhosePeersItMatches) {
  // A client with an extra label: a new identity matched by web's
  // podSelector peer, by no peer of db's policy.
  uint32_t canary = cluster.IdentityFor("x", {{"app", "client"}, {"track", "canary"}});
  EXPECT_NE(canary, client);
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "web")));
  EXPECT_TRUE(cluster.IngressAllowed("x", "web", canary, 80));

  // An identity no selector matches dirties nothing.
  uint64_t before = Computations();
  cluster.IdentityFor("x", {{"app", "batch"}});
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), IsEmpty());
  EXPECT_EQ(Computations(), before) << "no policy's peers changed: nothing recomputed";

  // An identity of namespace y matches web's namespaceSelector peer.
  uint32_t y_batch = cluster.IdentityFor("y", {{"app", "batch"}});
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "web")));
  EXPECT_TRUE(cluster.IngressAllowed("x", "web", y_batch, 80));

  // Deleting an identity removes its entries where it was a peer.
  cluster.engine.DeleteIdentity(canary);
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "web")));
  EXPECT_FALSE(cluster.IngressAllowed("x", "web", canary, 80));
}

TEST_F(IncrementalTest, PolicyChangeDirtiesOnlyTheEndpointsItSelects) {
  // New policy selecting db only.
  cluster.Policy(R"({"metadata": {"name": "db-egress", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 53}]}]}})");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "db")));
  // Update it.
  cluster.Policy(R"({"metadata": {"name": "db-egress", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 54}]}]}})");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "db")));
  // The same object again: nothing.
  cluster.Policy(R"({"metadata": {"name": "db-egress", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 54}]}]}})");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), IsEmpty());
  // Move it from db to client: both (before and after).
  cluster.Policy(R"({"metadata": {"name": "db-egress", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 54}]}]}})");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "client"), Key("x", "db")));
  EXPECT_FALSE(cluster.PolicyOf("x", "db").egress_isolated);
  EXPECT_TRUE(cluster.PolicyOf("x", "client").egress_isolated);
  // Delete: the endpoint it selected.
  cluster.engine.DeletePolicy("x", "db-egress");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "client")));
  // A policy in y selects nothing in x.
  cluster.Policy(R"({"metadata": {"name": "deny", "namespace": "y"}, "spec": {"podSelector": {}}})");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("y", "client")));
}

TEST_F(IncrementalTest, AnIpBlockPrefixInsideAnotherPolicysRangeDirtiesThatPolicysEndpoints) {
  cluster.Policy(R"({"metadata": {"name": "web-out", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "192.168.0.0/16"}}]}]}})");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "web")));
  PrefixChanges added = cluster.engine.TakePrefixChanges();
  ASSERT_EQ(added.upserts.size(), 1u);
  // db's new policy names 192.168.1.0/24: addresses there now carry a new
  // identity that web's ipBlock must allow as well.
  cluster.Policy(R"({"metadata": {"name": "db-out", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "192.168.1.0/24"}}]}]}})");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "db"), Key("x", "web")));
  uint32_t narrow = cluster.CidrIdentity("192.168.1.0/24");
  EXPECT_TRUE(cluster.EgressAllowed("x", "web", narrow, 1));
  PrefixChanges narrow_added = cluster.engine.TakePrefixChanges();
  ASSERT_EQ(narrow_added.upserts.size(), 1u);
  EXPECT_EQ(narrow_added.upserts[0].second, narrow);
  cluster.engine.DeletePolicy("x", "db-out");
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "db"), Key("x", "web")));
  EXPECT_THAT(cluster.engine.TakePrefixChanges().deletes, ElementsAre(*IpPrefix::Parse("192.168.1.0/24")));
}

TEST_F(IncrementalTest, NamespaceLabelsReachSelectorsThroughIdentities) {
  // Namespace z gets team=y: its pods' new identities (the agent re-resolves
  // them) match web's namespaceSelector.
  cluster.Namespace("z");
  uint32_t z_pod = cluster.Pod("z", "p", {{"app", "p"}});
  cluster.engine.TakeDirtyEndpoints();
  EXPECT_FALSE(cluster.IngressAllowed("x", "web", z_pod, 80));
  cluster.Namespace("z", {{"team", "y"}});
  uint32_t relabelled = cluster.IdentityFor("z", {{"app", "p"}});
  EXPECT_NE(relabelled, z_pod);
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "web")));
  EXPECT_TRUE(cluster.IngressAllowed("x", "web", relabelled, 80));
}

TEST_F(IncrementalTest, EndpointLifecycle) {
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), IsEmpty());
  // Same endpoint again: no change.
  cluster.engine.UpsertEndpoint(*cluster.engine.EndpointOf(Key("x", "web")));
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), IsEmpty());
  // Its identity changes (pod relabelled to app=db): it now gets db's policy.
  LocalEndpoint moved = *cluster.engine.EndpointOf(Key("x", "web"));
  moved.identity = db;
  cluster.engine.UpsertEndpoint(moved);
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "web")));
  EXPECT_EQ(cluster.PolicyOf("x", "web"), cluster.PolicyOf("x", "db"));
  EXPECT_EQ(cluster.engine.EndpointOfAddress(*IpAddress::Parse("10.0.0.1")), Key("x", "web"));
  EXPECT_EQ(cluster.engine.EndpointOfPod("x", "web"), Key("x", "web"));
  cluster.engine.DeleteEndpoint(Key("x", "web"));
  EXPECT_EQ(cluster.engine.PolicyOf(Key("x", "web")), nullptr);
  EXPECT_EQ(cluster.engine.EndpointOfAddress(*IpAddress::Parse("10.0.0.1")), std::nullopt);
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), IsEmpty());
  EXPECT_EQ(cluster.engine.Trace(Key("x", "web"), Direction::kIngress, client, 6, 80).decision,
            TraceDecision::kAllowedNotIsolated);
}

// An egress rule whose ports are all named gets entries only for peers
// with such ports: a new identity without them recomputes nothing there.
TEST(NamedPortIncrementalTest, OnlyIdentitiesWithTheNamedPortMatter) {
  TestCluster cluster;
  cluster.Namespace("x");
  cluster.Pod("x", "client", {{"app", "client"}});
  cluster.Policy(R"({"metadata": {"name": "to-http", "namespace": "x"},
      "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]}})");
  cluster.engine.TakeDirtyEndpoints();
  uint64_t before = cluster.engine.Stats().endpoint_computations;
  cluster.IdentityFor("x", {{"app", "no-pods-yet"}});
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), IsEmpty());
  EXPECT_EQ(cluster.engine.Stats().endpoint_computations, before);
  // A pod with an http port under that identity: client gets the entry.
  uint32_t server = cluster.Pod("x", "server", {{"app", "no-pods-yet"}}, "", false,
                                nlohmann::json::parse(R"([{"name": "http", "containerPort": 8080}])"));
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "client")));
  EXPECT_TRUE(cluster.EgressAllowed("x", "client", server, 8080));
  // A new identity whose pod already has the port (pod first, identity later).
  cluster.engine.UpsertPod(*k8s::ParsePod(nlohmann::json::parse(R"({"metadata": {"name": "s2", "namespace": "x",
      "labels": {"app": "s2"}}, "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 9000}]}]}})")));
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), IsEmpty()) << "its identity is not known yet";
  uint32_t s2 = cluster.IdentityFor("x", {{"app", "s2"}});
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "client")));
  EXPECT_TRUE(cluster.EgressAllowed("x", "client", s2, 9000));
  cluster.engine.DeleteIdentity(s2);
  EXPECT_THAT(cluster.engine.TakeDirtyEndpoints(), ElementsAre(Key("x", "client")));
  EXPECT_FALSE(cluster.EgressAllowed("x", "client", s2, 9000));
}

// A batch (a cluster-state batch, an identity snapshot) compiles each
// affected endpoint once, to the same result as one call at a time.
TEST(BatchTest, SameResultOneComputationPerEndpoint) {
  auto build = [](TestCluster& cluster) {
    cluster.Namespace("x", {{"team", "x"}});
    for (int i = 0; i < 5; ++i) {
      cluster.Pod("x", "p" + std::to_string(i), {{"app", "a" + std::to_string(i % 2)}});
    }
    for (int q = 0; q < 4; ++q) {
      cluster.Policy(R"({"metadata": {"name": "p)" + std::to_string(q) + R"(", "namespace": "x"},
          "spec": {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": )" +
                     std::to_string(80 + q) + "}]}]}}");
    }
  };
  TestCluster one_by_one;
  build(one_by_one);
  TestCluster batched;
  batched.engine.BeginBatch();
  batched.engine.BeginBatch();  // nested
  build(batched);
  batched.engine.EndBatch();
  EXPECT_EQ(batched.engine.Stats().endpoint_computations, 0u) << "nothing before the outermost EndBatch";
  batched.engine.EndBatch();
  EXPECT_EQ(batched.engine.Stats().endpoint_computations, 5u);
  EXPECT_GT(one_by_one.engine.Stats().endpoint_computations, 5u);
  EXPECT_EQ(batched.engine.TakeDirtyEndpoints(), one_by_one.engine.TakeDirtyEndpoints());
  for (int i = 0; i < 5; ++i) {
    std::string name = "p" + std::to_string(i);
    EXPECT_EQ(batched.PolicyOf("x", name), one_by_one.PolicyOf("x", name)) << name;
    EXPECT_EQ(batched.PolicyOf("x", name).rules.size(), 1u + 4u * 2u) << "host + 4 ports x 2 identities";
  }
}

}  // namespace
}  // namespace ebpfcni::policy
