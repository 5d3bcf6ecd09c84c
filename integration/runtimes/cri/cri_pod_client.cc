// cri-pod-client: drives a CRI runtime's pod-sandbox lifecycle the way
// kubelet does (RunPodSandbox -> PodSandboxStatus -> StopPodSandbox ->
// RemovePodSandbox), for the containerd CRI test. Debian 12 has no crictl.
//
// Usage: cri-pod-client SOCKET COMMAND [ARGS]
//   version                         runtime name/version, CRI API version
//   run NAME NAMESPACE UID [--port HOST_IP:HOST_PORT:CONTAINER_PORT]...
//       [--annotation KEY=VALUE]...  prints the new sandbox id; annotations
//                                   such as kubernetes.io/ingress-bandwidth
//                                   reach CNI as capability args
//   status ID                       prints {"id","state","ip","additional_ips","pid"}
//                                   as JSON
//   stop ID | remove ID
// Exit codes: 0 success, 1 RPC failed, 2 usage error.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "common/grpc/channel.h"
#include "runtime_v1_subset.grpc.pb.h"

namespace {

// RunPodSandbox includes CNI ADD; StopPodSandbox includes CNI DEL and may
// wait for the sandbox process to exit. Generous, but never unbounded.
constexpr std::chrono::seconds kCallTimeout(60);

int Usage() {
  std::cerr << "usage: cri-pod-client SOCKET version | run NAME NAMESPACE UID "
               "[--port HOST_IP:HOST_PORT:CONTAINER_PORT]... [--annotation KEY=VALUE]... | "
               "status ID | stop ID | remove ID\n";
  return 2;
}

int Failed(const std::string& what, const grpc::Status& status) {
  std::cerr << what << " failed: code " << static_cast<int>(status.error_code()) << ": "
            << status.error_message() << "\n";
  return 1;
}

// Parses "127.0.0.1:18080:8080" into a CRI port mapping.
bool ParsePortMapping(const std::string& spec, runtime::v1::PortMapping& mapping) {
  const auto last = spec.rfind(':');
  if (last == std::string::npos || last == 0) return false;
  const auto middle = spec.rfind(':', last - 1);
  if (middle == std::string::npos) return false;
  try {
    mapping.set_host_ip(spec.substr(0, middle));
    mapping.set_host_port(std::stoi(spec.substr(middle + 1, last - middle - 1)));
    mapping.set_container_port(std::stoi(spec.substr(last + 1)));
  } catch (const std::exception&) {
    return false;
  }
  mapping.set_protocol(runtime::v1::TCP);
  return true;
}

class Client {
 public:
  explicit Client(const std::string& socket)
      : stub_(runtime::v1::RuntimeService::NewStub(ebpfcni::MakeChannel(socket))) {}

  int Version() {
    runtime::v1::VersionRequest request;
    request.set_version("v1");
    runtime::v1::VersionResponse response;
    grpc::ClientContext context;
    ebpfcni::SetDeadline(context, kCallTimeout);
    auto status = stub_->Version(&context, request, &response);
    if (!status.ok()) return Failed("Version", status);
    std::cout << response.runtime_name() << " " << response.runtime_version() << " (CRI "
              << response.runtime_api_version() << ")\n";
    return 0;
  }

  int Run(const std::string& name, const std::string& pod_namespace, const std::string& uid,
          const std::vector<std::string>& options) {
    runtime::v1::RunPodSandboxRequest request;
    auto* config = request.mutable_config();
    config->mutable_metadata()->set_name(name);
    config->mutable_metadata()->set_namespace_(pod_namespace);
    config->mutable_metadata()->set_uid(uid);
    config->set_hostname(name);
    for (size_t i = 0; i < options.size(); i += 2) {
      if (i + 1 >= options.size()) return Usage();
      const std::string& flag = options[i];
      const std::string& value = options[i + 1];
      if (flag == "--port") {
        if (!ParsePortMapping(value, *config->add_port_mappings())) {
          std::cerr << "bad port mapping '" << value << "', want HOST_IP:HOST_PORT:CONTAINER_PORT\n";
          return 2;
        }
      } else if (flag == "--annotation") {
        const auto equals = value.find('=');
        if (equals == std::string::npos) {
          std::cerr << "bad annotation '" << value << "', want KEY=VALUE\n";
          return 2;
        }
        (*config->mutable_annotations())[value.substr(0, equals)] = value.substr(equals + 1);
      } else {
        return Usage();
      }
    }
    runtime::v1::RunPodSandboxResponse response;
    grpc::ClientContext context;
    ebpfcni::SetDeadline(context, kCallTimeout);
    auto status = stub_->RunPodSandbox(&context, request, &response);
    if (!status.ok()) return Failed("RunPodSandbox", status);
    std::cout << response.pod_sandbox_id() << "\n";
    return 0;
  }

  int Status(const std::string& id) {
    runtime::v1::PodSandboxStatusRequest request;
    request.set_pod_sandbox_id(id);
    request.set_verbose(true);
    runtime::v1::PodSandboxStatusResponse response;
    grpc::ClientContext context;
    ebpfcni::SetDeadline(context, kCallTimeout);
    auto status = stub_->PodSandboxStatus(&context, request, &response);
    if (!status.ok()) return Failed("PodSandboxStatus", status);
    nlohmann::json out;
    out["id"] = response.status().id();
    out["state"] = runtime::v1::PodSandboxState_Name(response.status().state());
    out["ip"] = response.status().network().ip();
    // Dual-stack pods: CRI reports the other family's address here.
    out["additional_ips"] = nlohmann::json::array();
    for (const auto& extra : response.status().network().additional_ips()) {
      out["additional_ips"].push_back(extra.ip());
    }
    out["pid"] = 0;
    // containerd's verbose info: {"info": "{\"pid\": 1234, ...}"}.
    if (auto it = response.info().find("info"); it != response.info().end()) {
      auto info = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
      if (info.is_object() && info.contains("pid")) out["pid"] = info["pid"];
    }
    std::cout << out.dump() << "\n";
    return 0;
  }

  int Stop(const std::string& id) {
    runtime::v1::StopPodSandboxRequest request;
    request.set_pod_sandbox_id(id);
    runtime::v1::StopPodSandboxResponse response;
    grpc::ClientContext context;
    ebpfcni::SetDeadline(context, kCallTimeout);
    auto status = stub_->StopPodSandbox(&context, request, &response);
    return status.ok() ? 0 : Failed("StopPodSandbox", status);
  }

  int Remove(const std::string& id) {
    runtime::v1::RemovePodSandboxRequest request;
    request.set_pod_sandbox_id(id);
    runtime::v1::RemovePodSandboxResponse response;
    grpc::ClientContext context;
    ebpfcni::SetDeadline(context, kCallTimeout);
    auto status = stub_->RemovePodSandbox(&context, request, &response);
    return status.ok() ? 0 : Failed("RemovePodSandbox", status);
  }

 private:
  std::unique_ptr<runtime::v1::RuntimeService::Stub> stub_;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) return Usage();
  Client client(args[0]);
  const std::string& command = args[1];
  if (command == "version" && args.size() == 2) return client.Version();
  if (command == "run" && args.size() >= 5) {
    return client.Run(args[2], args[3], args[4], {args.begin() + 5, args.end()});
  }
  if (command == "status" && args.size() == 3) return client.Status(args[2]);
  if (command == "stop" && args.size() == 3) return client.Stop(args[2]);
  if (command == "remove" && args.size() == 3) return client.Remove(args[2]);
  return Usage();
}
