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
  // Registers as the store's change listener, so watchers wake as soon as
  // the store (or, over etcd, another replica) changes something.
  IdentityServiceImpl(IdentityStore& store, LabelFilter filter);
  ~IdentityServiceImpl() override;

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
  grpc::Status WatchIpCache(grpc::ServerContext*, const v1::WatchIpCacheRequest*,
                            grpc::ServerWriter<v1::WatchIpCacheResponse>*) override;
  grpc::Status NodeHeartbeat(grpc::ServerContext*, const v1::NodeHeartbeatRequest*,
                             v1::NodeHeartbeatResponse*) override;
  grpc::Status UpsertIpCacheEntry(grpc::ServerContext*, const v1::UpsertIpCacheEntryRequest*,
                                  v1::UpsertIpCacheEntryResponse*) override;
  grpc::Status DeleteIpCacheEntry(grpc::ServerContext*, const v1::DeleteIpCacheEntryRequest*,
                                  v1::DeleteIpCacheEntryResponse*) override;

 private:
  absl::StatusOr<LabelSet> CanonicalLabels(const google::protobuf::RepeatedPtrField<v1::Label>& labels) const;
  absl::StatusOr<v1::AllocateIdentityResponse> Allocate(const LabelSet& labels, const v1::Owner& owner);
  void NotifyWatchers();
  // Sends changes after `revision` (fetched by `changes_since`, written by
  // `send`) until the client goes or the service stops, waking on every
  // store change notification.
  template <typename Fetch, typename Send>
  grpc::Status StreamChanges(grpc::ServerContext* context, uint64_t revision, Fetch changes_since, Send send);

  IdentityStore& store_;
  LabelFilter filter_;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  // Bumped by every change notification; watchers wait for it to move.
  uint64_t local_changes_ = 0;
  bool stopping_ = false;
};

// Converts between the store's label key and the API's Identity message.
v1::Identity ToProto(const StoredIdentity& identity);

}  // namespace ebpfcni::identity
