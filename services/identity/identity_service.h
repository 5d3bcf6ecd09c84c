#pragma once
// gRPC front of the identity service: validates and canonicalises label
// sets, answers reserved identities itself and everything else from an
// IdentityStore, and streams changes to watchers.
#include <atomic>
#include <condition_variable>
#include <mutex>

#include "ebpfcni/identity/v1/identity.grpc.pb.h"
#include "services/identity/identity_store.h"
#include "services/identity/label_filter.h"

namespace ebpfcni::identity {

class IdentityServiceImpl final : public ebpfcni::identity::v1::IdentityService::Service {
 public:
  IdentityServiceImpl(IdentityStore& store, LabelFilter filter) : store_(store), filter_(std::move(filter)) {}

  // Ends open watch streams (called on shutdown).
  void StopWatches();
  // Deletes identities unreferenced for at least `grace`.
  absl::Status CollectGarbage(absl::Duration grace);

  grpc::Status AllocateIdentity(grpc::ServerContext*, const v1::AllocateIdentityRequest*,
                                v1::AllocateIdentityResponse*) override;
  grpc::Status ReleaseIdentity(grpc::ServerContext*, const v1::ReleaseIdentityRequest*,
                               v1::ReleaseIdentityResponse*) override;
  grpc::Status GetIdentity(grpc::ServerContext*, const v1::GetIdentityRequest*, v1::GetIdentityResponse*) override;
  grpc::Status LookupIdentity(grpc::ServerContext*, const v1::LookupIdentityRequest*,
                              v1::LookupIdentityResponse*) override;
  grpc::Status ListIdentities(grpc::ServerContext*, const v1::ListIdentitiesRequest*,
                              v1::ListIdentitiesResponse*) override;
  grpc::Status ResolvePod(grpc::ServerContext*, const v1::ResolvePodRequest*, v1::ResolvePodResponse*) override;
  grpc::Status WatchIdentities(grpc::ServerContext*, const v1::WatchIdentitiesRequest*,
                               grpc::ServerWriter<v1::WatchIdentitiesResponse>*) override;

 private:
  absl::StatusOr<LabelSet> CanonicalLabels(const google::protobuf::RepeatedPtrField<v1::Label>& labels) const;
  absl::StatusOr<v1::AllocateIdentityResponse> Allocate(const LabelSet& labels, const v1::Owner& owner);
  void NotifyWatchers();

  IdentityStore& store_;
  LabelFilter filter_;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  uint64_t local_changes_ = 0;
  bool stopping_ = false;
};

// Converts between the store's label key and the API's Identity message.
v1::Identity ToProto(const StoredIdentity& identity);

}  // namespace ebpfcni::identity
