#pragma once
// Follows the identity service's WatchIdentities stream for the agent: a
// full snapshot (delivered as one step, so identities deleted while the
// agent was away disappear too), then one callback per delta. Reconnects
// with backoff and resumes after the last revision it saw; a revision the
// service can no longer resume from restarts with a snapshot.
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include <grpcpp/channel.h>

#include "ebpfcni/identity/v1/identity.grpc.pb.h"
#include "services/identity/labels.h"
#include "services/policy/agent/stream_follower.h"

namespace ebpfcni::policy {

struct IdentityEntry {
  uint32_t id = 0;
  identity::LabelSet labels;
};

class IdentityWatcher final : public StreamFollower {
 public:
  struct Callbacks {
    // Every identity that exists now; the receiver forgets any other.
    std::function<void(std::vector<IdentityEntry>)> on_snapshot;
    std::function<void(IdentityEntry)> on_upsert;
    std::function<void(uint32_t id)> on_delete;
  };

  IdentityWatcher(std::shared_ptr<grpc::Channel> channel, Callbacks callbacks);
  ~IdentityWatcher() override { Stop(); }

 private:
  grpc::Status FollowOnce(grpc::ClientContext& context, bool* progressed) override;
  void OnStreamEnded(const grpc::Status& status) override;

  std::unique_ptr<identity::v1::IdentityService::Stub> stub_;
  Callbacks callbacks_;
  uint64_t revision_ = 0;  // only the follower thread touches it
};

// The proto labels of an identity as the compiler's label set.
identity::LabelSet LabelSetFromProto(const google::protobuf::RepeatedPtrField<identity::v1::Label>& labels);

}  // namespace ebpfcni::policy
