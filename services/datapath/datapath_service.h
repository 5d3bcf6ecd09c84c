#pragma once
// gRPC front of the datapath: ebpfcni.datapath.v1.DatapathService. Converts
// messages and status codes; the work is done by EndpointManager.
#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "services/datapath/endpoint_manager.h"

namespace ebpfcni::datapath {

class DatapathServiceImpl final : public ebpfcni::datapath::v1::DatapathService::Service {
 public:
  // `manager` must outlive the service.
  explicit DatapathServiceImpl(EndpointManager* manager) : manager_(manager) {}

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
  grpc::Status GarbageCollectEndpoints(grpc::ServerContext* context,
                                       const v1::GarbageCollectEndpointsRequest* request,
                                       v1::GarbageCollectEndpointsResponse* response) override;

 private:
  EndpointManager* manager_;
};

}  // namespace ebpfcni::datapath
