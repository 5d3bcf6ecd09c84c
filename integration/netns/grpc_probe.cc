// ebpf-cni-grpc-probe: a small gRPC client for scripts and integration tests.
//
// Debian 12 packages no grpcurl, so up.sh (readiness), demo.sh (showing
// counters) and the integration tests use this instead. It speaks only the
// standard grpc.health.v1 and server-reflection protocols plus the read-only
// List* RPCs of the ebpf-cni services; it never changes state.
//
// Usage: ebpf-cni-grpc-probe COMMAND TARGET [ARG]
//   health TARGET [SERVICE]   prints the serving status; exit 0 iff SERVING
//   wait TARGET SECONDS       polls health "" until SERVING or the time is up
//   services TARGET           lists services via server reflection
//   endpoints TARGET          datapath ListEndpoints, as JSON
//   allocations TARGET        ipam ListAllocations, as JSON
//   pools TARGET              ipam ListPools, as JSON
// TARGET is a unix socket path or any gRPC target URI.
//
// Exit codes: 0 success, 1 RPC failed or not SERVING, 2 usage error.
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "ebpfcni/datapath/v1/datapath.grpc.pb.h"
#include "ebpfcni/ipam/v1/ipam.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace {

constexpr auto kCallTimeout = std::chrono::seconds(5);

std::string ToTarget(const std::string& arg) {
  // A bare path is a unix socket; anything with a scheme is used as given.
  if (!arg.empty() && arg[0] == '/') return "unix:" + arg;
  return arg;
}

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

int ReportFailure(const std::string& what, const grpc::Status& status) {
  std::cerr << what << " failed: code " << static_cast<int>(status.error_code()) << ": "
            << status.error_message() << "\n";
  return 1;
}

int PrintJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    std::cerr << "cannot render JSON: " << status.ToString() << "\n";
    return 1;
  }
  std::cout << json;
  return 0;
}

// Returns the serving status name, or an empty string (with the error on
// stderr) when the call itself failed.
std::string CheckHealth(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                        bool quiet) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    if (!quiet) ReportFailure("grpc.health.v1.Health/Check", status);
    return "";
  }
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

int Health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  std::string state = CheckHealth(channel, service, /*quiet=*/false);
  if (state.empty()) return 1;
  std::cout << state << "\n";
  return state == "SERVING" ? 0 : 1;
}

int Wait(const std::shared_ptr<grpc::Channel>& channel, int seconds) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (true) {
    if (CheckHealth(channel, "", /*quiet=*/true) == "SERVING") return 0;
    if (std::chrono::steady_clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // One last verbose attempt so the caller sees why.
  std::cerr << "not SERVING after " << seconds << "s\n";
  return Health(channel, "") == 0 ? 0 : 1;
}

int Services(const std::shared_ptr<grpc::Channel>& channel) {
  namespace refl = grpc::reflection::v1alpha;
  auto stub = refl::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = stub->ServerReflectionInfo(&context);
  refl::ServerReflectionRequest request;
  request.set_list_services("");
  if (!stream->Write(request)) return ReportFailure("reflection write", stream->Finish());
  stream->WritesDone();
  refl::ServerReflectionResponse response;
  bool listed = false;
  while (stream->Read(&response)) {
    if (response.has_error_response()) {
      std::cerr << "reflection error " << response.error_response().error_code() << ": "
                << response.error_response().error_message() << "\n";
      return 1;
    }
    for (const auto& service : response.list_services_response().service()) {
      std::cout << service.name() << "\n";
      listed = true;
    }
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) return ReportFailure("grpc.reflection.v1alpha.ServerReflection", status);
  return listed ? 0 : 1;
}

// Calls one read-only unary List RPC with an empty request and prints the
// response as JSON.
template <typename Stub, typename Request, typename Response>
int CallAndPrint(const std::string& name, Stub& stub,
                 grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*)) {
  Request request;
  Response response;
  grpc::ClientContext context;
  SetDeadline(context);
  grpc::Status status = (stub.*method)(&context, request, &response);
  if (!status.ok()) return ReportFailure(name, status);
  return PrintJson(response);
}

int Endpoints(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = ebpfcni::datapath::v1::DatapathService::NewStub(channel);
  return CallAndPrint("ListEndpoints", *stub,
                      &ebpfcni::datapath::v1::DatapathService::Stub::ListEndpoints);
}

int Allocations(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = ebpfcni::ipam::v1::IpamService::NewStub(channel);
  return CallAndPrint("ListAllocations", *stub, &ebpfcni::ipam::v1::IpamService::Stub::ListAllocations);
}

int Pools(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = ebpfcni::ipam::v1::IpamService::NewStub(channel);
  return CallAndPrint("ListPools", *stub, &ebpfcni::ipam::v1::IpamService::Stub::ListPools);
}

int Usage() {
  std::cerr << "usage: ebpf-cni-grpc-probe "
               "{health TARGET [SERVICE] | wait TARGET SECONDS | services TARGET |\n"
               "                            endpoints TARGET | allocations TARGET | pools "
               "TARGET}\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  const std::string command = argv[1];
  // Short reconnect backoff: "wait" polls a socket that appears only once the
  // service has started, and the default backoff (1s growing to 120s) would
  // make readiness look much later than it is.
  grpc::ChannelArguments channel_args;
  channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  channel_args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  auto channel = grpc::CreateCustomChannel(ToTarget(argv[2]), grpc::InsecureChannelCredentials(),
                                           channel_args);
  const std::string arg = argc > 3 ? argv[3] : "";

  if (command == "health") return Health(channel, arg);
  if (command == "wait") {
    int seconds = 0;
    try {
      seconds = std::stoi(arg);
    } catch (const std::exception&) {
      return Usage();
    }
    return Wait(channel, seconds);
  }
  if (command == "services") return Services(channel);
  if (command == "endpoints") return Endpoints(channel);
  if (command == "allocations") return Allocations(channel);
  if (command == "pools") return Pools(channel);
  return Usage();
}
