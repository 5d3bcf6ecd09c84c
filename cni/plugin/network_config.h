#pragma once
// The network configuration the runtime writes on stdin: the conflist
// entry for this plugin with cniVersion and name injected, plus
// runtimeConfig, prevResult and (GC) cni.dev/valid-attachments. Keys we do
// not know are ignored so we work inside any conflist (e.g. before portmap
// and bandwidth). Plugin keys are documented in docs/cni-config.md.
#include <chrono>
#include <optional>
#include <string>
#include <absl/strings/string_view.h>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "cni/plugin/result.h"

namespace ebpfcni::cni {

inline constexpr absl::string_view kDefaultRunDir = "/run/ebpf-cni";
inline constexpr absl::string_view kDefaultLogFile = "/var/log/ebpf-cni.log";
inline constexpr absl::string_view kDefaultHostVethPrefix = "ebpf";
inline constexpr int kDefaultMtu = 1500;
inline constexpr int kDefaultTimeoutMs = 5000;
// Bounds that keep the plugin from hanging a runtime (timeoutMs) and keep
// host veth names within 15 characters (hostVethPrefix).
inline constexpr int kMinTimeoutMs = 100;
inline constexpr int kMaxTimeoutMs = 60000;
inline constexpr size_t kMaxHostVethPrefixLength = 7;

// A CNI attachment, as in cni.dev/valid-attachments.
struct AttachmentRef {
  std::string container_id;
  std::string ifname;
  auto operator<=>(const AttachmentRef&) const = default;
};

// runtimeConfig, keys matched case-insensitively. We do not act on any of
// these (portmap and bandwidth later in the chain do); we read what is
// there so we can refuse capabilities we cannot honour instead of silently
// ignoring them, and so that a pod the bandwidth plugin will shape on its
// way out gets its programs attached in a way that leaves that plugin room.
struct RuntimeConfig {
  nlohmann::json port_mappings;  // null when absent
  nlohmann::json bandwidth;      // null when absent (needs the "bandwidth"
                                 // capability on our conflist entry too)
  // True when `bandwidth` limits what the pod sends (egressRate or
  // egressBurst > 0): the bandwidth plugin then adds an `ingress` qdisc to
  // the host veth, which cannot share it with a clsact qdisc.
  bool LimitsPodEgress() const;
  // Capabilities that ask *this* plugin to do something it does not
  // support ("ips", "mac", "infinibandGUID", ...). ADD fails with code 2
  // naming them.
  std::vector<std::string> unsupported_requests;
};

struct NetworkConfig {
  std::string cni_version;
  std::string name;
  std::string type;

  std::string run_dir{kDefaultRunDir};
  std::string ipam_socket;      // default <run_dir>/ipam.sock
  std::string datapath_socket;  // default <run_dir>/datapath.sock
  std::string identity_socket;  // default <run_dir>/identity.sock
  // The node's policy agent (ebpf-cni-policy). Empty (the default): ADD
  // resolves the pod's identity with the identity service directly and the
  // endpoint starts without policy. Set: ADD asks the agent for identity
  // and initial policy (PolicyService.ResolveEndpoint).
  std::string policy_socket;
  int mtu = kDefaultMtu;
  std::string host_veth_prefix{kDefaultHostVethPrefix};
  std::string log_file{kDefaultLogFile};
  std::chrono::milliseconds timeout{kDefaultTimeoutMs};

  RuntimeConfig runtime_config;
  std::optional<CniResult> prev_result;
  // GC: the union of cni.dev/valid-attachments and the older
  // cni.dev/attachments; nullopt when neither key is present.
  std::optional<std::vector<AttachmentRef>> valid_attachments;
};

// Parses stdin. Errors (with CNI codes): not JSON -> 6; missing or
// unsupported cniVersion -> 1; missing name/type or a plugin key with the
// wrong type or out of range -> 7; malformed prevResult -> 6.
absl::StatusOr<NetworkConfig> ParseNetworkConfig(absl::string_view text);

// Best effort: the cniVersion in text when it is a supported version,
// otherwise kLatestCniVersion. Used to encode errors for configs that fail
// to parse further on.
std::string CniVersionForErrors(absl::string_view text);

// Case-insensitive member lookup; nullptr when absent.
const nlohmann::json* FindKeyCaseInsensitive(const nlohmann::json& object, absl::string_view key);

}  // namespace ebpfcni::cni
