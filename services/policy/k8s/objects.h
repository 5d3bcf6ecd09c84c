#pragma once
// The Kubernetes objects the policy agent reads — Pod, Namespace and
// networking.k8s.io/v1 NetworkPolicy — parsed from their JSON form (as the
// API server returns them, or as a YAML manifest converted to JSON) and
// validated the way the API server validates them.
//
// Errors are INVALID_ARGUMENT and start with the field path, e.g.
// "spec.ingress[0].from[1].ipBlock.cidr: invalid CIDR \"10.0.0.0/33\"", so a
// person can find the line to fix.
//
// Reference: https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "common/net/ip_address.h"
#include "services/policy/k8s/label_selector.h"

namespace ebpfcni::policy::k8s {

// IANA protocol numbers of the protocols NetworkPolicy and container ports
// know.
inline constexpr uint8_t kProtocolTcp = 6;
inline constexpr uint8_t kProtocolUdp = 17;
inline constexpr uint8_t kProtocolSctp = 132;

// "TCP" -> 6, "UDP" -> 17, "SCTP" -> 132; nullopt for anything else
// (Kubernetes protocol names are case-sensitive upper case).
std::optional<uint8_t> ProtocolFromName(std::string_view name);
std::string_view ProtocolName(uint8_t protocol);  // "TCP", or "proto-N"

// The namespace label every Namespace carries (set by the API server since
// Kubernetes 1.21), so a namespaceSelector can pick a namespace by name.
inline constexpr char kNamespaceNameLabel[] = "kubernetes.io/metadata.name";

// Namespace of objects whose metadata.namespace is missing (manifests).
inline constexpr char kDefaultNamespace[] = "default";

struct ContainerPort {
  std::string name;  // "" when unnamed
  uint16_t port = 0;
  uint8_t protocol = kProtocolTcp;  // 6/17/132

  bool operator==(const ContainerPort&) const = default;
};

struct Pod {
  std::string namespace_name, name;
  Labels labels;
  // Ports of spec.containers[] and spec.initContainers[] (sidecars serve too).
  std::vector<ContainerPort> ports;
  std::vector<std::string> pod_ips;  // status.podIPs[].ip, else status.podIP
  std::string node_name;             // spec.nodeName

  bool operator==(const Pod&) const = default;
};

struct Namespace {
  std::string name;
  Labels labels;  // always includes kubernetes.io/metadata.name=<name>

  bool operator==(const Namespace&) const = default;
};

// networking.k8s.io/v1 IPBlock: a CIDR minus some sub-ranges.
struct IpBlock {
  IpPrefix cidr;                // host bits cleared
  std::vector<IpPrefix> except; // each inside cidr, host bits cleared

  bool operator==(const IpBlock&) const = default;
};

// One element of from[] / to[]. Exactly one of: ip_block, or at least one of
// the two selectors (both = AND: pods matching pod_selector in namespaces
// matching namespace_selector).
struct NetworkPolicyPeer {
  std::optional<LabelSelector> pod_selector;
  std::optional<LabelSelector> namespace_selector;
  std::optional<IpBlock> ip_block;

  bool operator==(const NetworkPolicyPeer&) const = default;
};

struct NetworkPolicyPort {
  uint8_t protocol = kProtocolTcp;  // default TCP
  // Exactly one of: a number (1-65535), a name (a container port name), or
  // neither (every port of the protocol).
  uint16_t port = 0;
  std::string named_port;
  // Inclusive end of the range [port, end_port]; 0 = no range. Only with a
  // numeric port, >= port.
  uint16_t end_port = 0;

  bool all_ports() const { return port == 0 && named_port.empty(); }
  bool operator==(const NetworkPolicyPort&) const = default;
};

// One element of spec.ingress[] (peers = from[]) or spec.egress[] (peers =
// to[]). Empty or missing peers = every peer; empty or missing ports = every
// port of every protocol.
struct NetworkPolicyRule {
  std::vector<NetworkPolicyPeer> peers;
  std::vector<NetworkPolicyPort> ports;

  bool operator==(const NetworkPolicyRule&) const = default;
};

struct NetworkPolicy {
  std::string namespace_name, name;
  LabelSelector pod_selector;  // empty = every pod of the namespace
  // Effective policyTypes: as written, or when missing the default
  // (Ingress always; Egress iff spec.egress has at least one rule).
  bool applies_to_ingress = false;
  bool applies_to_egress = false;
  std::vector<NetworkPolicyRule> ingress;
  std::vector<NetworkPolicyRule> egress;

  bool operator==(const NetworkPolicy&) const = default;
};

absl::StatusOr<Pod> ParsePod(const nlohmann::json& object);
absl::StatusOr<Namespace> ParseNamespace(const nlohmann::json& object);
absl::StatusOr<NetworkPolicy> ParseNetworkPolicy(const nlohmann::json& object);

}  // namespace ebpfcni::policy::k8s
