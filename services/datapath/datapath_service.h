#pragma once
// gRPC front of the datapath: ebpfcni.datapath.v1.DatapathService. Converts
// messages and status codes; the work is done by EndpointManager.
#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "services/datapath/endpoint_manager.h"
#include "services/datapath/event_stream.h"

namespace ebpfcni::datapath {

class DatapathServiceImpl final : public ebpfcni::datapath::v1::DatapathService::Service {
 public:
  // How many endpoint changes may wait for one WatchEndpoints client before
  // its stream is ended with RESOURCE_EXHAUSTED (it then watches again).
  static constexpr size_t kDefaultWatchQueueCapacity = 4096;

  // `manager` (and `events`, if given) must outlive the service. Without
  // `events`, StreamEvents answers UNAVAILABLE.
  explicit DatapathServiceImpl(EndpointManager* manager, EventStream* events = nullptr,
                               size_t watch_queue_capacity = kDefaultWatchQueueCapacity)
      : manager_(manager), events_(events), watch_queue_capacity_(watch_queue_capacity) {}

  grpc::Status CreateEndpoint(grpc::ServerContext* context,
                              const v1::CreateEndpointRequest* request,
                              v1::CreateEndpointResponse* response) override;
  grpc::Status DeleteEndpoint(grpc::ServerContext* context,
                              const v1::DeleteEndpointRequest* request,
                              v1::DeleteEndpointResponse* response) override;
  grpc::Status GetEndpoint(grpc::ServerContext* context, const v1::GetEndpointRequest* request,
                           v1::GetEndpointResponse* response) override;
  grpc::Status ListEndpoints(grpc::ServerContext* context,
                             const v1::ListEndpointsRequest* request,
                             v1::ListEndpointsResponse* response) override;
  grpc::Status WatchEndpoints(grpc::ServerContext* context,
                              const v1::WatchEndpointsRequest* request,
                              grpc::ServerWriter<v1::WatchEndpointsResponse>* writer) override;
  grpc::Status GarbageCollectEndpoints(grpc::ServerContext* context,
                                       const v1::GarbageCollectEndpointsRequest* request,
                                       v1::GarbageCollectEndpointsResponse* response) override;
  grpc::Status SetEndpointIdentity(grpc::ServerContext* context,
                                   const v1::SetEndpointIdentityRequest* request,
                                   v1::SetEndpointIdentityResponse* response) override;
  grpc::Status ReplaceEndpointPolicy(grpc::ServerContext* context,
                                     const v1::ReplaceEndpointPolicyRequest* request,
                                     v1::ReplaceEndpointPolicyResponse* response) override;
  grpc::Status ReplaceEndpointPolicies(grpc::ServerContext* context,
                                       const v1::ReplaceEndpointPoliciesRequest* request,
                                       v1::ReplaceEndpointPoliciesResponse* response) override;
  grpc::Status UpsertPrefixIdentity(grpc::ServerContext* context,
                                    const v1::UpsertPrefixIdentityRequest* request,
                                    v1::UpsertPrefixIdentityResponse* response) override;
  grpc::Status DeletePrefixIdentity(grpc::ServerContext* context,
                                    const v1::DeletePrefixIdentityRequest* request,
                                    v1::DeletePrefixIdentityResponse* response) override;
  grpc::Status ListPrefixIdentities(grpc::ServerContext* context,
                                    const v1::ListPrefixIdentitiesRequest* request,
                                    v1::ListPrefixIdentitiesResponse* response) override;
  grpc::Status DumpPolicy(grpc::ServerContext* context, const v1::DumpPolicyRequest* request,
                          v1::DumpPolicyResponse* response) override;
  grpc::Status GetMetrics(grpc::ServerContext* context, const v1::GetMetricsRequest* request,
                          v1::GetMetricsResponse* response) override;
  grpc::Status StreamEvents(grpc::ServerContext* context,
                            const v1::StreamEventsRequest* request,
                            grpc::ServerWriter<v1::StreamEventsResponse>* writer) override;
  grpc::Status Trace(grpc::ServerContext* context, const v1::TraceRequest* request,
                     v1::TraceResponse* response) override;

 private:
  EndpointManager* manager_;
  EventStream* events_;
  size_t watch_queue_capacity_;
};

}  // namespace ebpfcni::datapath
