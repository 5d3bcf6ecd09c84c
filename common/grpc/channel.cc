#include "common/grpc/channel.h"

#include <arpa/inet.h>

#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <spdlog/spdlog.h>

namespace ebpfcni {

std::string NormalizeTarget(const std::string& target) {
  if (!target.empty() && target[0] == '/') return "unix:" + target;
  return target;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  // Fail fast when a service is down instead of waiting for reconnect backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(NormalizeTarget(target),
                                   grpc::InsecureChannelCredentials(), args);
}

namespace {

enum class TargetKind { kUnixPath, kIpv4, kIpv6, kName };

TargetKind KindOf(const std::string& target) {
  if (absl::StartsWith(target, "/") || absl::StartsWith(target, "unix:")) return TargetKind::kUnixPath;
  if (absl::StartsWith(target, "[")) return TargetKind::kIpv6;
  std::string host = target.substr(0, target.rfind(':'));
  in_addr addr{};
  if (inet_pton(AF_INET, host.c_str(), &addr) == 1) return TargetKind::kIpv4;
  return TargetKind::kName;
}

std::string Seconds(std::chrono::milliseconds duration) {
  return absl::StrCat(duration.count() / 1000, ".", absl::Dec(duration.count() % 1000, absl::kZeroPad3), "s");
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeBalancedChannel(const std::vector<std::string>& targets,
                                                                   const BalancedChannelOptions& options) {
  if (targets.empty()) return absl::InvalidArgumentError("no target to balance over");
  std::string target;
  if (targets.size() == 1) {
    target = NormalizeTarget(targets[0]);
  } else {
    // gRPC's unix/ipv4/ipv6 resolvers take a comma-separated address list.
    TargetKind kind = KindOf(targets[0]);
    std::vector<std::string> addresses;
    for (const auto& t : targets) {
      if (KindOf(t) != kind) {
        return absl::InvalidArgumentError(absl::StrCat("cannot balance over a mix of target kinds: ",
                                                       absl::StrJoin(targets, ",")));
      }
      addresses.push_back(std::string(absl::StripPrefix(t, "unix:")));
    }
    switch (kind) {
      case TargetKind::kUnixPath:
        target = "unix:" + absl::StrJoin(addresses, ",");
        break;
      case TargetKind::kIpv4:
        target = "ipv4:" + absl::StrJoin(addresses, ",");
        break;
      case TargetKind::kIpv6:
        target = "ipv6:" + absl::StrJoin(addresses, ",");
        break;
      case TargetKind::kName:
        return absl::InvalidArgumentError(
            absl::StrCat("several DNS names (", absl::StrJoin(targets, ","),
                         ") cannot share one channel; put the replicas behind one name or list their addresses"));
    }
  }
  // Empty "name" entry: the policy applies to every method of the channel.
  std::string service_config = absl::StrCat(R"({"loadBalancingConfig":[{"round_robin":{}}],)",
                                            R"("methodConfig":[{"name":[{}],"retryPolicy":{)",
                                            R"("maxAttempts":)", options.max_attempts, ",",
                                            R"("initialBackoff":")", Seconds(options.initial_backoff), R"(",)",
                                            R"("maxBackoff":")", Seconds(options.max_backoff), R"(",)",
                                            R"("backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]})");
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(service_config);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

std::shared_ptr<grpc::Channel> MakeChannelForTargets(const std::string& targets) {
  std::vector<std::string> list = absl::StrSplit(targets, ',', absl::SkipEmpty());
  if (list.size() <= 1) return MakeChannel(targets);
  auto balanced = MakeBalancedChannel(list);
  if (balanced.ok()) return *balanced;
  spdlog::warn("targets \"{}\": {}; using only {}", targets, balanced.status().ToString(), list.front());
  return MakeChannel(list.front());
}

void SetDeadline(grpc::ClientContext& context, std::chrono::milliseconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

}  // namespace ebpfcni
