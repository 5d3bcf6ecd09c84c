#pragma once
// Test helper: a small cluster fed into a PolicyEngine the way the agent
// feeds it — Namespace and Pod objects, the identities the identity service
// would allocate for their label sets, local endpoints, and NetworkPolicies
// parsed from their JSON form.
#include <cstdint>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "services/identity/label_filter.h"
#include "services/policy/compiler/policy_engine.h"
#include "services/policy/k8s/objects.h"

namespace ebpfcni::policy::test_support {

class TestCluster {
 public:
  PolicyEngine engine;

  void Namespace(const std::string& name, k8s::Labels labels = {}) {
    nlohmann::json object = {{"metadata", {{"name", name}}}};
    if (!labels.empty()) object["metadata"]["labels"] = labels;
    auto ns = k8s::ParseNamespace(object);
    ASSERT_TRUE(ns.ok()) << ns.status();
    engine.UpsertNamespace(*ns);
    namespace_labels_[name] = ns->labels;
  }

  // The identity the identity service would give this label set (allocated
  // here on first use, from 1000 up).
  uint32_t IdentityFor(const std::string& ns, const k8s::Labels& labels) {
    identity::LabelSet set = identity::LabelFilter::Default().Filter(
        identity::PodLabelSet(ns, labels, namespace_labels_[ns]));
    auto [it, inserted] = identities_.try_emplace(set.Key(), next_identity_);
    if (inserted) {
      ++next_identity_;
      engine.UpsertIdentity(it->second, set);
    }
    return it->second;
  }

  // A pod of the cluster; `local` pods are also endpoints of this node
  // (key "<ns>-<name>"/eth0). Returns its identity.
  uint32_t Pod(const std::string& ns, const std::string& name, const k8s::Labels& labels,
               const std::string& ip = "", bool local = true, const nlohmann::json& ports = nullptr) {
    nlohmann::json object = {{"metadata", {{"name", name}, {"namespace", ns}}}};
    if (!labels.empty()) object["metadata"]["labels"] = labels;
    if (!ports.is_null()) object["spec"]["containers"] = {{{"name", "c"}, {"ports", ports}}};
    if (!ip.empty()) object["status"]["podIP"] = ip;
    auto pod = k8s::ParsePod(object);
    EXPECT_TRUE(pod.ok()) << pod.status();
    engine.UpsertPod(*pod);
    uint32_t id = IdentityFor(ns, labels);
    if (local) {
      LocalEndpoint endpoint{Key(ns, name), id, ns, name, {}};
      if (!ip.empty()) endpoint.addresses.push_back(ip);
      engine.UpsertEndpoint(endpoint);
    }
    return id;
  }

  static EndpointKey Key(const std::string& ns, const std::string& name) { return {ns + "-" + name, "eth0"}; }

  // A NetworkPolicy from its JSON text (metadata + spec).
  void Policy(const std::string& json) {
    auto policy = k8s::ParseNetworkPolicy(nlohmann::json::parse(json));
    ASSERT_TRUE(policy.ok()) << policy.status();
    engine.UpsertPolicy(*policy);
  }

  const CompiledEndpointPolicy& PolicyOf(const std::string& ns, const std::string& name) {
    const CompiledEndpointPolicy* policy = engine.PolicyOf(Key(ns, name));
    static const CompiledEndpointPolicy kNone;
    EXPECT_NE(policy, nullptr) << ns << "/" << name;
    return policy != nullptr ? *policy : kNone;
  }

  DirectionTrace Ingress(const std::string& ns, const std::string& name, uint32_t peer, uint16_t port,
                         uint8_t protocol = k8s::kProtocolTcp) {
    return engine.Trace(Key(ns, name), Direction::kIngress, peer, protocol, port);
  }
  DirectionTrace Egress(const std::string& ns, const std::string& name, uint32_t peer, uint16_t port,
                        uint8_t protocol = k8s::kProtocolTcp) {
    return engine.Trace(Key(ns, name), Direction::kEgress, peer, protocol, port);
  }
  bool IngressAllowed(const std::string& ns, const std::string& name, uint32_t peer, uint16_t port,
                      uint8_t protocol = k8s::kProtocolTcp) {
    return Ingress(ns, name, peer, port, protocol).decision != TraceDecision::kDeniedDefault;
  }
  bool EgressAllowed(const std::string& ns, const std::string& name, uint32_t peer, uint16_t port,
                     uint8_t protocol = k8s::kProtocolTcp) {
    return Egress(ns, name, peer, port, protocol).decision != TraceDecision::kDeniedDefault;
  }

  uint32_t CidrIdentity(const std::string& prefix) {
    auto parsed = IpPrefix::Parse(prefix);
    EXPECT_TRUE(parsed.ok());
    for (const auto& [listed, id] : engine.PrefixIdentities()) {
      if (listed == *parsed) return id;
    }
    ADD_FAILURE() << "no CIDR identity for " << prefix;
    return 0;
  }

 private:
  std::map<std::string, k8s::Labels> namespace_labels_;
  std::map<std::string, uint32_t> identities_;
  uint32_t next_identity_ = 1000;
};

}  // namespace ebpfcni::policy::test_support
