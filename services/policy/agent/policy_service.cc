#include "services/policy/agent/policy_service.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/grpc/status.h"

namespace ebpfcni::policy {
namespace {

template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status PolicyServiceImpl::ResolveEndpoint(grpc::ServerContext*, const v1::ResolveEndpointRequest* request,
                                                v1::ResolveEndpointResponse* response) {
  return Reply(agent_.ResolveEndpoint(*request), response);
}

grpc::Status PolicyServiceImpl::TracePolicy(grpc::ServerContext*, const v1::TracePolicyRequest* request,
                                            v1::TracePolicyResponse* response) {
  return Reply(agent_.TracePolicy(*request), response);
}

grpc::Status PolicyServiceImpl::ListPolicies(grpc::ServerContext*, const v1::ListPoliciesRequest* request,
                                             v1::ListPoliciesResponse* response) {
  return Reply(agent_.ListPolicies(*request), response);
}

grpc::Status PolicyServiceImpl::DescribeRule(grpc::ServerContext*, const v1::DescribeRuleRequest* request,
                                             v1::DescribeRuleResponse* response) {
  return Reply(agent_.DescribeRule(request->rule_id()), response);
}

grpc::Status PolicyServiceImpl::GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                                          v1::GetStatusResponse* response) {
  *response = agent_.GetStatus();
  return grpc::Status::OK;
}

grpc::Status PolicyServiceImpl::VerifyDatapath(grpc::ServerContext*, const v1::VerifyDatapathRequest*,
                                               v1::VerifyDatapathResponse* response) {
  return Reply(agent_.VerifyDatapath(), response);
}

grpc::Status PolicyServiceImpl::StreamPolicyEvents(grpc::ServerContext* context,
                                                   const v1::StreamPolicyEventsRequest* request,
                                                   grpc::ServerWriter<v1::StreamPolicyEventsResponse>* writer) {
  grpc::ClientContext upstream;
  // The upstream Read blocks until the next event; a client that goes away
  // (or a server shutting down) must end it without waiting for one.
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  std::thread canceller([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!done) {
      if (context->IsCancelled()) {
        upstream.TryCancel();
        return;
      }
      done_cv.wait_for(lock, std::chrono::milliseconds(200));
    }
  });
  auto reader = agent_.datapath().StreamEvents(&upstream, request->filter());
  datapath::v1::StreamEventsResponse event;
  bool client_gone = false;
  while (reader->Read(&event)) {
    v1::StreamPolicyEventsResponse out;
    *out.mutable_event() = agent_.EnrichEvent(event.event());
    if (!writer->Write(out)) {
      client_gone = true;
      upstream.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  done_cv.notify_all();
  canceller.join();
  if (client_gone || context->IsCancelled()) return grpc::Status::OK;
  if (!status.ok()) {
    return grpc::Status(status.error_code(), "datapath service StreamEvents: " + status.error_message());
  }
  return grpc::Status::OK;
}

}  // namespace ebpfcni::policy
