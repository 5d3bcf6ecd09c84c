#pragma once
// ebpfcni.policy.v1.PolicyService over a PolicyAgent: converts statuses and
// runs the event stream (the datapath's StreamEvents, enriched).
#include "ebpfcni/policy/v1/policy.grpc.pb.h"
#include "services/policy/agent/policy_agent.h"

namespace ebpfcni::policy {

class PolicyServiceImpl final : public v1::PolicyService::Service {
 public:
  explicit PolicyServiceImpl(PolicyAgent& agent) : agent_(agent) {}

  grpc::Status ResolveEndpoint(grpc::ServerContext* context, const v1::ResolveEndpointRequest* request,
                               v1::ResolveEndpointResponse* response) override;
  grpc::Status TracePolicy(grpc::ServerContext* context, const v1::TracePolicyRequest* request,
                           v1::TracePolicyResponse* response) override;
  grpc::Status ListPolicies(grpc::ServerContext* context, const v1::ListPoliciesRequest* request,
                            v1::ListPoliciesResponse* response) override;
  grpc::Status DescribeRule(grpc::ServerContext* context, const v1::DescribeRuleRequest* request,
                            v1::DescribeRuleResponse* response) override;
  grpc::Status StreamPolicyEvents(grpc::ServerContext* context, const v1::StreamPolicyEventsRequest* request,
                                  grpc::ServerWriter<v1::StreamPolicyEventsResponse>* writer) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::GetStatusResponse* response) override;
  grpc::Status VerifyDatapath(grpc::ServerContext* context, const v1::VerifyDatapathRequest* request,
                              v1::VerifyDatapathResponse* response) override;

 private:
  PolicyAgent& agent_;
};

}  // namespace ebpfcni::policy
