#pragma once
// A small client for etcd's v3 gRPC API: one channel (round_robin over the
// endpoints), unary KV/Lease calls with a deadline each, and errors turned
// into statuses a person can act on ("etcd at 127.0.0.1:2379 unreachable:
// ..."). Streams (Watch, LeaseKeepAlive) use the stubs directly.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <grpcpp/channel.h>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"

namespace ebpfcni::identity::etcd {

struct EtcdClientOptions {
  // host:port of every etcd member; requests are balanced over all of them.
  std::vector<std::string> endpoints;
  // Bound on every unary request, so a lost etcd turns into UNAVAILABLE
  // instead of a hung caller.
  std::chrono::milliseconds request_timeout{5000};
};

// The smallest key greater than every key starting with `prefix`
// (etcd's range_end for a prefix scan).
std::string PrefixEnd(const std::string& prefix);

// The gRPC target for a list of endpoints: "ipv4:a:1,b:2" for addresses,
// a bare "host:port" (DNS) for a single name.
std::string EtcdTarget(const std::vector<std::string>& endpoints);

class EtcdClient {
 public:
  explicit EtcdClient(EtcdClientOptions options);

  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request);
  absl::StatusOr<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& request);
  absl::Status Compact(int64_t revision);
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(int64_t ttl_seconds);
  absl::Status LeaseRevoke(int64_t lease_id);
  // One keep-alive of `lease_id` over a short-lived LeaseKeepAlive stream
  // (for leases kept alive by outside heartbeats, not by a loop of ours).
  // Returns the lease's TTL after renewal; 0 when the lease is gone.
  absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease_id);

  etcdserverpb::Watch::Stub& watch_stub() { return *watch_; }
  etcdserverpb::Lease::Stub& lease_stub() { return *lease_; }
  // "127.0.0.1:2379,127.0.0.1:22379", for messages.
  const std::string& endpoints_text() const { return endpoints_text_; }
  std::chrono::milliseconds request_timeout() const { return options_.request_timeout; }

  // Turns a failed etcd call into the status callers see: connection
  // problems (UNAVAILABLE, DEADLINE_EXCEEDED) become UNAVAILABLE naming the
  // endpoints; anything else keeps its code with etcd's message.
  absl::Status CallError(const char* what, const grpc::Status& status) const;

 private:
  void SetDeadline(grpc::ClientContext& context) const;
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Unary(const char* what, Stub& stub,
                                 grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                                 const Request& request) const;

  EtcdClientOptions options_;
  std::string endpoints_text_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
};

// Builders for the transaction pieces the store uses.
etcdserverpb::Compare CompareCreateRevision(const std::string& key, etcdserverpb::Compare::CompareResult result,
                                            int64_t create_revision);
// create_revision == 0 for every key in [prefix, PrefixEnd(prefix)): true
// when no key with that prefix exists.
etcdserverpb::Compare CompareNoKeyWithPrefix(const std::string& prefix);
etcdserverpb::Compare CompareModRevision(const std::string& key, int64_t mod_revision);
// The key is attached to `lease` (false for a missing key).
etcdserverpb::Compare CompareLease(const std::string& key, int64_t lease);
etcdserverpb::RequestOp PutOp(const std::string& key, const std::string& value, int64_t lease = 0);
etcdserverpb::RequestOp DeleteOp(const std::string& key);
etcdserverpb::RequestOp RangeOp(const std::string& key);
etcdserverpb::RequestOp CountPrefixOp(const std::string& prefix);

}  // namespace ebpfcni::identity::etcd
