#include "services/identity/etcd/etcd_client.h"

#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "common/grpc/status.h"

namespace ebpfcni::identity::etcd {

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  // Every byte was 0xff: etcd reads "\0" as "to the end of the keyspace".
  return std::string(1, '\0');
}

std::string EtcdTarget(const std::vector<std::string>& endpoints) {
  if (endpoints.size() == 1) return endpoints[0];
  // The sockaddr resolvers take a comma list; round_robin spreads over it.
  bool ipv6 = !endpoints.empty() && absl::StartsWith(endpoints[0], "[");
  return absl::StrCat(ipv6 ? "ipv6:" : "ipv4:", absl::StrJoin(endpoints, ","));
}

EtcdClient::EtcdClient(EtcdClientOptions options)
    : options_(std::move(options)), endpoints_text_(absl::StrJoin(options_.endpoints, ",")) {
  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  // Reconnect quickly after etcd comes back; callers see UNAVAILABLE at
  // once while it is away (no wait_for_ready).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Also the connect timeout: a starting etcd accepts TCP before it speaks
  // HTTP/2, and gRPC's default (20s) would wait that long on such a socket.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
  // Detect a dead etcd under an idle watch stream.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  channel_ = grpc::CreateCustomChannel(EtcdTarget(options_.endpoints), grpc::InsecureChannelCredentials(), args);
  kv_ = etcdserverpb::KV::NewStub(channel_);
  watch_ = etcdserverpb::Watch::NewStub(channel_);
  lease_ = etcdserverpb::Lease::NewStub(channel_);
}

void EtcdClient::SetDeadline(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() + options_.request_timeout);
}

absl::Status EtcdClient::CallError(const char* what, const grpc::Status& status) const {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::UnavailableError(absl::StrCat("etcd at ", endpoints_text_, " unreachable (", what,
                                                 "): ", status.error_message(),
                                                 "; check that etcd runs and --etcd_endpoints is right"));
    default: {
      absl::Status converted = FromGrpcStatus(status);
      return absl::Status(converted.code(), absl::StrCat("etcd ", what, " failed: ", status.error_message()));
    }
  }
}

// One unary etcd call with the deadline and the error translation.
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> EtcdClient::Unary(const char* what, Stub& stub,
                                           grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                                           const Request& request) const {
  grpc::ClientContext context;
  SetDeadline(context);
  Response response;
  grpc::Status status = (stub.*method)(&context, request, &response);
  if (!status.ok()) return CallError(what, status);
  return response;
}

absl::StatusOr<etcdserverpb::RangeResponse> EtcdClient::Range(const etcdserverpb::RangeRequest& request) {
  return Unary("Range", *kv_, &etcdserverpb::KV::Stub::Range, request);
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(const etcdserverpb::TxnRequest& request) {
  return Unary("Txn", *kv_, &etcdserverpb::KV::Stub::Txn, request);
}

absl::StatusOr<etcdserverpb::PutResponse> EtcdClient::Put(const etcdserverpb::PutRequest& request) {
  return Unary("Put", *kv_, &etcdserverpb::KV::Stub::Put, request);
}

absl::Status EtcdClient::Compact(int64_t revision) {
  etcdserverpb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  return Unary("Compact", *kv_, &etcdserverpb::KV::Stub::Compact, request).status();
}

absl::StatusOr<etcdserverpb::LeaseGrantResponse> EtcdClient::LeaseGrant(int64_t ttl_seconds) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  auto response = Unary("LeaseGrant", *lease_, &etcdserverpb::Lease::Stub::LeaseGrant, request);
  if (response.ok() && !response->error().empty()) {
    return absl::InternalError(absl::StrCat("etcd LeaseGrant: ", response->error()));
  }
  return response;
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease_id) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease_id);
  return Unary("LeaseRevoke", *lease_, &etcdserverpb::Lease::Stub::LeaseRevoke, request).status();
}

absl::StatusOr<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease_id) {
  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = lease_->LeaseKeepAlive(&context);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease_id);
  etcdserverpb::LeaseKeepAliveResponse response;
  bool answered = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  if (answered) context.TryCancel();  // etcd keeps the stream open; we are done
  grpc::Status status = stream->Finish();
  if (!answered) {
    return CallError("LeaseKeepAlive",
                     status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended without an answer") : status);
  }
  return response.ttl();
}

etcdserverpb::Compare CompareLease(const std::string& key, int64_t lease) {
  etcdserverpb::Compare compare;
  compare.set_key(key);
  compare.set_target(etcdserverpb::Compare::LEASE);
  compare.set_result(etcdserverpb::Compare::EQUAL);
  compare.set_lease(lease);
  return compare;
}

etcdserverpb::Compare CompareCreateRevision(const std::string& key, etcdserverpb::Compare::CompareResult result,
                                            int64_t create_revision) {
  etcdserverpb::Compare compare;
  compare.set_key(key);
  compare.set_target(etcdserverpb::Compare::CREATE);
  compare.set_result(result);
  compare.set_create_revision(create_revision);
  return compare;
}

etcdserverpb::Compare CompareNoKeyWithPrefix(const std::string& prefix) {
  etcdserverpb::Compare compare = CompareCreateRevision(prefix, etcdserverpb::Compare::EQUAL, 0);
  compare.set_range_end(PrefixEnd(prefix));
  return compare;
}

etcdserverpb::Compare CompareModRevision(const std::string& key, int64_t mod_revision) {
  etcdserverpb::Compare compare;
  compare.set_key(key);
  compare.set_target(etcdserverpb::Compare::MOD);
  compare.set_result(etcdserverpb::Compare::EQUAL);
  compare.set_mod_revision(mod_revision);
  return compare;
}

etcdserverpb::RequestOp PutOp(const std::string& key, const std::string& value, int64_t lease) {
  etcdserverpb::RequestOp op;
  auto* put = op.mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  return op;
}

etcdserverpb::RequestOp DeleteOp(const std::string& key) {
  etcdserverpb::RequestOp op;
  op.mutable_request_delete_range()->set_key(key);
  return op;
}

etcdserverpb::RequestOp RangeOp(const std::string& key) {
  etcdserverpb::RequestOp op;
  op.mutable_request_range()->set_key(key);
  return op;
}

etcdserverpb::RequestOp CountPrefixOp(const std::string& prefix) {
  etcdserverpb::RequestOp op;
  auto* range = op.mutable_request_range();
  range->set_key(prefix);
  range->set_range_end(PrefixEnd(prefix));
  range->set_count_only(true);
  return op;
}

}  // namespace ebpfcni::identity::etcd
