#include "cni/plugin/network_config.h"

#include <algorithm>

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include "cni/plugin/environment.h"
#include "cni/plugin/errors.h"
#include "cni/plugin/version.h"

namespace ebpfcni::cni {
namespace {

absl::Status ConfigError(absl::string_view message) {
  return CniStatus(code::kInvalidNetworkConfig, absl::StrCat("network config: ", message));
}

absl::Status ReadString(const nlohmann::json& config, const char* key, std::string& out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return ConfigError(absl::StrCat("\"", key, "\" must be a string"));
  out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadInt(const nlohmann::json& config, const char* key, int min, int max, int& out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return ConfigError(absl::StrCat("\"", key, "\" must be an integer"));
  int64_t value = it->get<int64_t>();
  if (value < min || value > max) {
    return ConfigError(absl::StrCat("\"", key, "\" is ", value, "; it must be between ", min, " and ", max));
  }
  out = static_cast<int>(value);
  return absl::OkStatus();
}

absl::StatusOr<RuntimeConfig> ParseRuntimeConfig(const nlohmann::json& config) {
  RuntimeConfig runtime;
  const nlohmann::json* section = FindKeyCaseInsensitive(config, "runtimeConfig");
  if (section == nullptr || section->is_null()) return runtime;
  if (!section->is_object()) return ConfigError("\"runtimeConfig\" must be an object");
  if (const nlohmann::json* ports = FindKeyCaseInsensitive(*section, "portMappings")) {
    runtime.port_mappings = *ports;
  }
  if (const nlohmann::json* bandwidth = FindKeyCaseInsensitive(*section, "bandwidth")) {
    runtime.bandwidth = *bandwidth;
  }
  // Capabilities that only the main (interface-creating) plugin could
  // honour. Anything else in runtimeConfig belongs to other plugins.
  for (absl::string_view capability : {"ips", "mac", "infinibandGUID", "deviceID", "aliases"}) {
    const nlohmann::json* value = FindKeyCaseInsensitive(*section, capability);
    if (value == nullptr || value->is_null()) continue;
    // Runtimes may send an empty value for a capability nobody asked for.
    if (value->is_string() ? value->get_ref<const std::string&>().empty()
                           : (value->is_array() || value->is_object()) && value->empty()) {
      continue;
    }
    runtime.unsupported_requests.emplace_back(capability);
  }
  return runtime;
}

absl::Status ParseAttachmentList(const nlohmann::json& list, absl::string_view key,
                                 std::vector<AttachmentRef>& out) {
  if (!list.is_array()) return ConfigError(absl::StrCat("\"", key, "\" must be an array"));
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& entry = list[i];
    std::string where = absl::StrCat(key, "[", i, "]");
    if (!entry.is_object()) return ConfigError(absl::StrCat(where, " must be an object"));
    const nlohmann::json* id = FindKeyCaseInsensitive(entry, "containerID");
    const nlohmann::json* ifname = FindKeyCaseInsensitive(entry, "ifname");
    if (id == nullptr || !id->is_string() || id->get<std::string>().empty()) {
      return ConfigError(absl::StrCat(where, ".containerID must be a non-empty string"));
    }
    if (ifname == nullptr || !ifname->is_string() || ifname->get<std::string>().empty()) {
      return ConfigError(absl::StrCat(where, ".ifname must be a non-empty string"));
    }
    out.push_back({id->get<std::string>(), ifname->get<std::string>()});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::vector<AttachmentRef>>> ParseValidAttachments(const nlohmann::json& config) {
  std::optional<std::vector<AttachmentRef>> result;
  // libcni 1.1 sends cni.dev/valid-attachments; early 1.1 drafts used
  // cni.dev/attachments. Accept both, together if need be.
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) continue;
    if (!result) result.emplace();
    absl::Status status = ParseAttachmentList(*it, key, *result);
    if (!status.ok()) return status;
  }
  if (result) {
    std::sort(result->begin(), result->end());
    result->erase(std::unique(result->begin(), result->end()), result->end());
  }
  return result;
}

}  // namespace

bool RuntimeConfig::LimitsPodEgress() const {
  if (!bandwidth.is_object()) return false;
  for (absl::string_view key : {"egressRate", "egressBurst"}) {
    const nlohmann::json* value = FindKeyCaseInsensitive(bandwidth, key);
    if (value != nullptr && value->is_number() && value->get<double>() > 0) return true;
  }
  return false;
}

const nlohmann::json* FindKeyCaseInsensitive(const nlohmann::json& object, absl::string_view key) {
  if (!object.is_object()) return nullptr;
  // An exact match wins over a case-insensitive one.
  if (auto it = object.find(std::string(key)); it != object.end()) return &*it;
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (absl::EqualsIgnoreCase(it.key(), key)) return &it.value();
  }
  return nullptr;
}

std::string CniVersionForErrors(absl::string_view text) {
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_object()) {
    auto it = config.find("cniVersion");
    if (it != config.end() && it->is_string() && IsSupportedCniVersion(it->get<std::string>())) {
      return it->get<std::string>();
    }
  }
  return std::string(kLatestCniVersion);
}

absl::StatusOr<NetworkConfig> ParseNetworkConfig(absl::string_view text) {
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) {
    return CniStatus(code::kDecodingFailure, "network config on stdin is not valid JSON");
  }
  if (!config.is_object()) {
    return CniStatus(code::kDecodingFailure, "network config on stdin must be a JSON object");
  }

  NetworkConfig out;
  auto version = config.find("cniVersion");
  if (version == config.end() || !version->is_string() || version->get<std::string>().empty()) {
    return CniStatus(code::kIncompatibleVersion,
                     absl::StrCat("network config has no \"cniVersion\"; supported versions: ",
                                  absl::StrJoin(SupportedCniVersions(), ", ")));
  }
  out.cni_version = version->get<std::string>();
  if (!IsSupportedCniVersion(out.cni_version)) {
    return CniStatus(code::kIncompatibleVersion,
                     absl::StrCat("cniVersion \"", out.cni_version, "\" is not supported; supported versions: ",
                                  absl::StrJoin(SupportedCniVersions(), ", ")));
  }

  if (absl::Status s = ReadString(config, "name", out.name); !s.ok()) return s;
  if (out.name.empty()) return ConfigError("\"name\" is required");
  if (absl::Status s = ReadString(config, "type", out.type); !s.ok()) return s;
  if (out.type.empty()) return ConfigError("\"type\" is required");

  if (absl::Status s = ReadString(config, "runDir", out.run_dir); !s.ok()) return s;
  if (out.run_dir.empty()) return ConfigError("\"runDir\" must not be empty");
  if (absl::Status s = ReadString(config, "ipamSocket", out.ipam_socket); !s.ok()) return s;
  if (absl::Status s = ReadString(config, "datapathSocket", out.datapath_socket); !s.ok()) return s;
  if (absl::Status s = ReadString(config, "identitySocket", out.identity_socket); !s.ok()) return s;
  // No default: enforcing NetworkPolicy is opt-in (a node without the agent
  // keeps working as before).
  if (absl::Status s = ReadString(config, "policySocket", out.policy_socket); !s.ok()) return s;
  if (out.ipam_socket.empty()) out.ipam_socket = absl::StrCat(out.run_dir, "/ipam.sock");
  if (out.datapath_socket.empty()) out.datapath_socket = absl::StrCat(out.run_dir, "/datapath.sock");
  if (out.identity_socket.empty()) out.identity_socket = absl::StrCat(out.run_dir, "/identity.sock");

  // 68 is the IPv4 minimum; 1280 would be the IPv6 one, but the pod may be
  // IPv4-only so the lower bound is the only safe generic one.
  if (absl::Status s = ReadInt(config, "mtu", 68, 65535, out.mtu); !s.ok()) return s;

  if (absl::Status s = ReadString(config, "hostVethPrefix", out.host_veth_prefix); !s.ok()) return s;
  if (out.host_veth_prefix.empty() || out.host_veth_prefix.size() > kMaxHostVethPrefixLength ||
      !IsValidInterfaceName(out.host_veth_prefix)) {
    return ConfigError(absl::StrCat("\"hostVethPrefix\" \"", out.host_veth_prefix, "\" must be 1-",
                                    kMaxHostVethPrefixLength,
                                    " characters valid in an interface name (the rest of the 15 "
                                    "characters is a hash of the attachment)"));
  }

  if (absl::Status s = ReadString(config, "logFile", out.log_file); !s.ok()) return s;

  int timeout_ms = kDefaultTimeoutMs;
  if (absl::Status s = ReadInt(config, "timeoutMs", kMinTimeoutMs, kMaxTimeoutMs, timeout_ms); !s.ok()) return s;
  out.timeout = std::chrono::milliseconds(timeout_ms);

  absl::StatusOr<RuntimeConfig> runtime = ParseRuntimeConfig(config);
  if (!runtime.ok()) return runtime.status();
  out.runtime_config = std::move(*runtime);

  if (auto prev = config.find("prevResult"); prev != config.end() && !prev->is_null()) {
    absl::StatusOr<CniResult> prev_result = DecodeResult(*prev);
    if (!prev_result.ok()) return prev_result.status();
    out.prev_result = std::move(*prev_result);
  }

  absl::StatusOr<std::optional<std::vector<AttachmentRef>>> attachments = ParseValidAttachments(config);
  if (!attachments.ok()) return attachments.status();
  out.valid_attachments = std::move(*attachments);
  return out;
}

}  // namespace ebpfcni::cni
