#include "services/policy/agent/policy_diff.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ebpfcni::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

datapath::v1::PolicyRule Rule(datapath::v1::PolicyDirection direction, uint32_t peer, uint32_t protocol, uint32_t port,
                              uint32_t rule_id, uint32_t end_port = 0) {
  datapath::v1::PolicyRule rule;
  rule.set_direction(direction);
  rule.set_peer_identity(peer);
  rule.set_protocol(protocol);
  rule.set_port(port);
  rule.set_end_port(end_port);
  rule.set_action(datapath::v1::POLICY_ACTION_ALLOW);
  rule.set_rule_id(rule_id);
  return rule;
}

datapath::v1::DumpPolicyResponse Kernel(bool ingress, bool egress, std::vector<datapath::v1::PolicyRule> rules) {
  datapath::v1::DumpPolicyResponse dump;
  dump.mutable_policy()->set_installed(true);
  dump.mutable_policy()->set_ingress_isolated(ingress);
  dump.mutable_policy()->set_egress_isolated(egress);
  for (auto& rule : rules) *dump.add_entries()->mutable_rule() = std::move(rule);
  return dump;
}

constexpr auto kIn = datapath::v1::POLICY_DIRECTION_INGRESS;
constexpr auto kOut = datapath::v1::POLICY_DIRECTION_EGRESS;

TEST(PolicyDiff, EqualPoliciesHaveNoDifference) {
  datapath::v1::EndpointPolicy compiled;
  compiled.set_ingress_isolated(true);
  *compiled.add_rules() = Rule(kIn, 301, 6, 80, 17);
  *compiled.add_rules() = Rule(kIn, 0, 17, 1000, 18, 2000);
  EXPECT_THAT(DiffEndpointPolicy(compiled, Kernel(true, false, {Rule(kIn, 0, 17, 1000, 18, 2000), Rule(kIn, 301, 6, 80, 17)})),
              IsEmpty());
}

TEST(PolicyDiff, MissingUnexpectedAndChangedEntriesAreEachReported) {
  datapath::v1::EndpointPolicy compiled;
  compiled.set_ingress_isolated(true);
  compiled.set_egress_isolated(true);
  *compiled.add_rules() = Rule(kIn, 301, 6, 80, 17);
  *compiled.add_rules() = Rule(kOut, 302, 17, 0, 19);
  *compiled.add_rules() = Rule(kIn, 303, 132, 9, 20);
  auto kernel = Kernel(true, true, {Rule(kOut, 302, 17, 0, 21), Rule(kOut, 0, 0, 0, 22), Rule(kIn, 303, 132, 9, 20)});
  EXPECT_THAT(DiffEndpointPolicy(compiled, kernel),
              ElementsAre("missing allow ingress id=301 TCP/80 (rule 17)",
                          "kernel has allow egress id=302 UDP any port (rule 21), compiled allow egress id=302 UDP any "
                          "port (rule 19)",
                          "unexpected allow egress id=any any protocol (rule 22)"));
}

TEST(PolicyDiff, NoPolicyInTheKernelMeansNotIsolated) {
  datapath::v1::EndpointPolicy compiled;
  compiled.set_ingress_isolated(true);
  datapath::v1::DumpPolicyResponse kernel;  // installed = false
  EXPECT_THAT(DiffEndpointPolicy(compiled, kernel), ElementsAre("ingress isolation: kernel off, compiled on"));
  EXPECT_THAT(DiffEndpointPolicy(datapath::v1::EndpointPolicy(), kernel), IsEmpty());
}

}  // namespace
}  // namespace ebpfcni::policy
