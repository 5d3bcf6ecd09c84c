#include "services/policy/agent/trace_explanation.h"

#include <gtest/gtest.h>

namespace ebpfcni::policy {
namespace {

v1::DirectionVerdict Verdict(v1::Decision decision) {
  v1::DirectionVerdict verdict;
  verdict.set_decision(decision);
  return verdict;
}

TEST(TraceExplanation, DeniedIngressNamesTheIsolatingPolicyThePeerAndThePort) {
  v1::DirectionVerdict ingress = Verdict(v1::DECISION_DENIED_DEFAULT);
  ingress.add_isolating_policies("x/deny-all");
  std::string text = ExplainTrace({"x/a", 300}, {"x/b", 301}, 6, 80, Verdict(v1::DECISION_ALLOWED_NOT_ISOLATED),
                                  ingress);
  EXPECT_EQ(text, "denied: x/b is isolated for ingress by x/deny-all and no rule allows x/a (identity 300) on TCP/80");
}

TEST(TraceExplanation, BothDirectionsDeniedAreBothSaid) {
  v1::DirectionVerdict egress = Verdict(v1::DECISION_DENIED_DEFAULT);
  egress.add_isolating_policies("x/no-egress");
  v1::DirectionVerdict ingress = Verdict(v1::DECISION_DENIED_DEFAULT);
  ingress.add_isolating_policies("y/p1");
  ingress.add_isolating_policies("y/p2");
  std::string text = ExplainTrace({"x/a", 300}, {"y/b", 302}, 17, 53, egress, ingress);
  EXPECT_EQ(text,
            "denied: x/a is isolated for egress by x/no-egress and no rule allows y/b (identity 302) on UDP/53; "
            "and y/b is isolated for ingress by y/p1, y/p2 and no rule allows x/a (identity 300) on UDP/53");
}

TEST(TraceExplanation, AllowedNamesTheRuleThatAllowedEachSide) {
  v1::DirectionVerdict ingress = Verdict(v1::DECISION_ALLOWED_BY_RULE);
  auto* rule = ingress.add_allowing_rules();
  rule->set_rule_id(17);
  rule->set_policy_namespace("demo");
  rule->set_policy_name("allow-frontend");
  rule->set_direction(datapath::v1::POLICY_DIRECTION_INGRESS);
  rule->set_rule_index(0);
  std::string text = ExplainTrace({"10.0.0.9", 2}, {"demo/backend", 301}, 132, 9, Verdict(v1::DECISION_NOT_ENFORCED_HERE),
                                  ingress);
  EXPECT_EQ(text,
            "allowed on SCTP/9: 10.0.0.9 egress is not enforced on this node; demo/backend ingress allowed by "
            "demo/allow-frontend ingress rule #0 (rule id 17)");
}

TEST(TraceExplanation, ImplicitRuleIsQuotedByItsDescription) {
  v1::DirectionVerdict ingress = Verdict(v1::DECISION_ALLOWED_BY_RULE);
  auto* rule = ingress.add_allowing_rules();
  rule->set_rule_id(1);
  rule->set_policy_name("node traffic to its pods is always allowed");
  std::string text = ExplainTrace({"10.0.0.1", 1}, {"x/b", 301}, 6, 80, Verdict(v1::DECISION_NOT_ENFORCED_HERE), ingress);
  EXPECT_NE(text.find("the implicit rule \"node traffic to its pods is always allowed\" (rule id 1)"), std::string::npos)
      << text;
}

TEST(TraceExplanation, ProtocolsWithoutPortsPrintNoPort) {
  EXPECT_EQ(ProtocolPortText(1, 8), "ICMP");
  EXPECT_EQ(ProtocolPortText(58, 128), "ICMPv6");
  EXPECT_EQ(ProtocolPortText(6, 443), "TCP/443");
  EXPECT_EQ(ProtocolPortText(47, 0), "protocol 47");
}

}  // namespace
}  // namespace ebpfcni::policy
