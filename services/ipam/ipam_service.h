#pragma once
// gRPC front of the IPAM service (ebpfcni.ipam.v1.IpamService): validates
// requests, translates between protos and the AllocationStore, logs every
// allocation and release, and maps absl::Status to grpc::Status.
#include "ebpfcni/ipam/v1/ipam.grpc.pb.h"
#include "services/ipam/allocation_store.h"

namespace ebpfcni::ipam {

inline constexpr char kIpamServiceName[] = "ebpfcni.ipam.v1.IpamService";

class IpamServiceImpl final : public ebpfcni::ipam::v1::IpamService::Service {
 public:
  // The store must outlive the service.
  explicit IpamServiceImpl(AllocationStore& store) : store_(store) {}

  grpc::Status Allocate(grpc::ServerContext* context, const v1::AllocateRequest* request,
                        v1::AllocateResponse* response) override;
  grpc::Status Release(grpc::ServerContext* context, const v1::ReleaseRequest* request,
                       v1::ReleaseResponse* response) override;
  grpc::Status ListAllocations(grpc::ServerContext* context, const v1::ListAllocationsRequest* request,
                               v1::ListAllocationsResponse* response) override;
  grpc::Status GarbageCollect(grpc::ServerContext* context, const v1::GarbageCollectRequest* request,
                              v1::GarbageCollectResponse* response) override;
  grpc::Status ListPools(grpc::ServerContext* context, const v1::ListPoolsRequest* request,
                         v1::ListPoolsResponse* response) override;

 private:
  AllocationStore& store_;
};

}  // namespace ebpfcni::ipam
