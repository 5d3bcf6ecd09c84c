#include "services/policy/k8s/objects.h"

#include <algorithm>
#include <cctype>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include "services/policy/k8s/json_fields.h"

namespace ebpfcni::policy::k8s {

std::optional<uint8_t> ProtocolFromName(std::string_view name) {
  if (name == "TCP") return kProtocolTcp;
  if (name == "UDP") return kProtocolUdp;
  if (name == "SCTP") return kProtocolSctp;
  return std::nullopt;
}

std::string_view ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case kProtocolTcp: return "TCP";
    case kProtocolUdp: return "UDP";
    case kProtocolSctp: return "SCTP";
    case 0: return "any";
    case 1: return "ICMP";
    case 58: return "ICMPv6";
  }
  return "other";
}

namespace {

using nlohmann::json;

// RFC 1123 subdomain: what metadata.name of Pods, Namespaces (a label, which
// is stricter, checked the same way here) and NetworkPolicies must be.
bool IsDnsSubdomain(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (absl::string_view part : absl::StrSplit(absl::string_view(name.data(), name.size()), '.')) {
    if (part.empty() || part.size() > 63) return false;
    if (!absl::ascii_isalnum(part.front()) || !absl::ascii_isalnum(part.back())) return false;
    for (char c : part) {
      if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-')) return false;
    }
  }
  return true;
}

// IANA_SVC_NAME: what a named port must be (at most 15 characters of a-z,
// 0-9 and '-', at least one letter, no leading, trailing or double '-').
bool IsPortName(std::string_view name) {
  if (name.empty() || name.size() > 15) return false;
  bool has_letter = false;
  for (char c : name) {
    if (absl::ascii_islower(c)) {
      has_letter = true;
    } else if (!absl::ascii_isdigit(c) && c != '-') {
      return false;
    }
  }
  if (name.front() == '-' || name.back() == '-') return false;
  if (name.find("--") != std::string_view::npos) return false;
  return has_letter;
}

constexpr char kPortNameRule[] =
    "must be at most 15 characters of a-z, 0-9 and '-', contain a letter, and not start, end or repeat '-'";

struct Metadata {
  std::string namespace_name, name;
  Labels labels;
};

// metadata.{name, namespace, labels}. `namespaced` objects get "default"
// when metadata.namespace is missing (manifests usually omit it).
absl::StatusOr<Metadata> ParseMetadata(const json& object, bool namespaced) {
  if (!object.is_object()) {
    return FieldError("<object>", absl::StrCat("expected an object, got ", std::string(JsonTypeName(object))));
  }
  auto metadata = ObjectMember(object, "metadata", "metadata");
  if (!metadata.ok()) return metadata.status();
  if (*metadata == nullptr) return FieldError("metadata", "required");
  Metadata result;
  auto name = StringMember(**metadata, "name", "metadata.name");
  if (!name.ok()) return name.status();
  if (!name->has_value() || (*name)->empty()) return FieldError("metadata.name", "required");
  if (!IsDnsSubdomain(**name)) {
    return FieldError("metadata.name", absl::StrCat("\"", **name, "\" is not a valid name (lower case alphanumeric "
                                                   "characters, '-' or '.', starting and ending alphanumeric)"));
  }
  result.name = **name;
  if (namespaced) {
    auto ns = StringMember(**metadata, "namespace", "metadata.namespace");
    if (!ns.ok()) return ns.status();
    result.namespace_name = ns->has_value() && !(*ns)->empty() ? **ns : kDefaultNamespace;
    if (!IsDnsSubdomain(result.namespace_name)) {
      return FieldError("metadata.namespace", absl::StrCat("\"", result.namespace_name, "\" is not a valid name"));
    }
  }
  auto labels = LabelMap(Member(**metadata, "labels"), "metadata.labels");
  if (!labels.ok()) return labels.status();
  result.labels = *std::move(labels);
  return result;
}

absl::StatusOr<uint8_t> ParseProtocol(const json& object, std::string_view path) {
  auto name = StringMember(object, "protocol", path);
  if (!name.ok()) return name.status();
  if (!name->has_value()) return kProtocolTcp;  // the API's default
  auto protocol = ProtocolFromName(**name);
  if (!protocol.has_value()) {
    return FieldError(path, absl::StrCat("unsupported value \"", **name, "\": supported values: \"TCP\", \"UDP\", \"SCTP\""));
  }
  return *protocol;
}

absl::StatusOr<uint16_t> ParsePortNumber(int64_t value, std::string_view path) {
  if (value < 1 || value > 65535) {
    return FieldError(path, absl::StrCat("must be between 1 and 65535, inclusive (got ", value, ")"));
  }
  return static_cast<uint16_t>(value);
}

absl::Status ParseContainerPorts(const json& spec, std::string_view list, std::string_view path,
                                 std::vector<ContainerPort>& ports) {
  auto containers = ArrayMember(spec, list, JoinPath(path, list));
  if (!containers.ok()) return containers.status();
  if (*containers == nullptr) return absl::OkStatus();
  for (size_t i = 0; i < (*containers)->size(); ++i) {
    const json& container = (**containers)[i];
    std::string container_path = IndexPath(JoinPath(path, list), i);
    if (!container.is_object()) return FieldError(container_path, "expected an object");
    std::string ports_path = JoinPath(container_path, "ports");
    auto port_list = ArrayMember(container, "ports", ports_path);
    if (!port_list.ok()) return port_list.status();
    if (*port_list == nullptr) continue;
    for (size_t j = 0; j < (*port_list)->size(); ++j) {
      const json& item = (**port_list)[j];
      std::string port_path = IndexPath(ports_path, j);
      if (!item.is_object()) return FieldError(port_path, "expected an object");
      ContainerPort port;
      auto number = IntegerMember(item, "containerPort", JoinPath(port_path, "containerPort"));
      if (!number.ok()) return number.status();
      if (!number->has_value()) return FieldError(JoinPath(port_path, "containerPort"), "required");
      auto valid_number = ParsePortNumber(**number, JoinPath(port_path, "containerPort"));
      if (!valid_number.ok()) return valid_number.status();
      port.port = *valid_number;
      auto protocol = ParseProtocol(item, JoinPath(port_path, "protocol"));
      if (!protocol.ok()) return protocol.status();
      port.protocol = *protocol;
      auto name = StringMember(item, "name", JoinPath(port_path, "name"));
      if (!name.ok()) return name.status();
      if (name->has_value() && !(*name)->empty()) {
        if (!IsPortName(**name)) {
          return FieldError(JoinPath(port_path, "name"), absl::StrCat("\"", **name, "\" ", kPortNameRule));
        }
        port.name = **name;
      }
      ports.push_back(std::move(port));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<IpPrefix> ParseCidr(const std::string& text, std::string_view path) {
  auto prefix = IpPrefix::Parse(text);
  if (!prefix.ok()) {
    return FieldError(path, absl::StrCat("invalid CIDR \"", text, "\" (e.g. \"192.168.1.0/24\" or \"2001:db8::/64\")"));
  }
  // Kubernetes accepted host bits for years ("10.0.0.1/24"); keep the network.
  return IpPrefix(prefix->Network(), prefix->length());
}

absl::StatusOr<IpBlock> ParseIpBlock(const json& object, std::string_view path) {
  IpBlock block;
  std::string cidr_path = JoinPath(path, "cidr");
  auto cidr = StringMember(object, "cidr", cidr_path);
  if (!cidr.ok()) return cidr.status();
  if (!cidr->has_value() || (*cidr)->empty()) return FieldError(cidr_path, "required");
  auto prefix = ParseCidr(**cidr, cidr_path);
  if (!prefix.ok()) return prefix.status();
  block.cidr = *prefix;
  std::string except_path = JoinPath(path, "except");
  auto except = ArrayMember(object, "except", except_path);
  if (!except.ok()) return except.status();
  if (*except != nullptr) {
    for (size_t i = 0; i < (*except)->size(); ++i) {
      const json& item = (**except)[i];
      std::string item_path = IndexPath(except_path, i);
      if (!item.is_string()) return FieldError(item_path, "expected a string");
      auto excepted = ParseCidr(item.get<std::string>(), item_path);
      if (!excepted.ok()) return excepted.status();
      // As the API server: each except must be a strict subset of cidr.
      if (excepted->family() != block.cidr.family() || !block.cidr.Contains(excepted->address()) ||
          excepted->length() <= block.cidr.length()) {
        return FieldError(item_path, absl::StrCat("\"", item.get<std::string>(), "\" must be a strict subset of `cidr` ",
                                                  block.cidr.ToString()));
      }
      block.except.push_back(*excepted);
    }
  }
  std::sort(block.except.begin(), block.except.end());
  block.except.erase(std::unique(block.except.begin(), block.except.end()), block.except.end());
  return block;
}

absl::StatusOr<NetworkPolicyPeer> ParsePeer(const json& object, std::string_view path) {
  if (!object.is_object()) {
    return FieldError(path, absl::StrCat("expected an object, got ", std::string(JsonTypeName(object))));
  }
  NetworkPolicyPeer peer;
  for (auto [key, target] : {std::pair{"podSelector", &peer.pod_selector},
                             std::pair{"namespaceSelector", &peer.namespace_selector}}) {
    std::string selector_path = JoinPath(path, key);
    if (const json* value = Member(object, key); value != nullptr) {
      auto selector = LabelSelector::FromJson(*value, selector_path);
      if (!selector.ok()) return selector.status();
      *target = *std::move(selector);
    }
  }
  std::string block_path = JoinPath(path, "ipBlock");
  auto block = ObjectMember(object, "ipBlock", block_path);
  if (!block.ok()) return block.status();
  if (*block != nullptr) {
    auto parsed = ParseIpBlock(**block, block_path);
    if (!parsed.ok()) return parsed.status();
    peer.ip_block = *std::move(parsed);
  }
  // ValidateNetworkPolicyPeer.
  bool has_selector = peer.pod_selector.has_value() || peer.namespace_selector.has_value();
  if (!has_selector && !peer.ip_block.has_value()) return FieldError(path, "must specify a peer");
  if (has_selector && peer.ip_block.has_value()) {
    return FieldError(path, "may not specify both ipBlock and another peer");
  }
  return peer;
}

absl::StatusOr<NetworkPolicyPort> ParsePolicyPort(const json& object, std::string_view path) {
  if (!object.is_object()) {
    return FieldError(path, absl::StrCat("expected an object, got ", std::string(JsonTypeName(object))));
  }
  NetworkPolicyPort port;
  auto protocol = ParseProtocol(object, JoinPath(path, "protocol"));
  if (!protocol.ok()) return protocol.status();
  port.protocol = *protocol;

  std::string port_path = JoinPath(path, "port");
  if (const json* value = Member(object, "port"); value != nullptr) {
    if (value->is_string()) {
      // An IntOrString written as a string: a number in a string is still a
      // number ("80"), anything else a container port name.
      std::string text = value->get<std::string>();
      bool numeric = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isdigit(c); });
      if (numeric) {
        if (text.size() > 5) return FieldError(port_path, "must be between 1 and 65535, inclusive");
        auto number = ParsePortNumber(std::stoll(text), port_path);
        if (!number.ok()) return number.status();
        port.port = *number;
      } else {
        if (!IsPortName(text)) return FieldError(port_path, absl::StrCat("\"", text, "\" ", kPortNameRule));
        port.named_port = text;
      }
    } else {
      auto number = IntegerMember(object, "port", port_path);
      if (!number.ok()) {
        return FieldError(port_path, absl::StrCat("expected an integer or a string, got ",
                                                  std::string(JsonTypeName(*value))));
      }
      auto valid = ParsePortNumber(**number, port_path);
      if (!valid.ok()) return valid.status();
      port.port = *valid;
    }
  }

  std::string end_path = JoinPath(path, "endPort");
  auto end_port = IntegerMember(object, "endPort", end_path);
  if (!end_port.ok()) return end_port.status();
  if (end_port->has_value()) {
    // ValidateNetworkPolicyPort: endPort needs a numeric port <= endPort.
    if (!port.named_port.empty()) return FieldError(end_path, "may not be specified when `port` is non-numeric");
    if (port.port == 0) return FieldError(end_path, "may not be specified when `port` is not specified");
    auto valid = ParsePortNumber(**end_port, end_path);
    if (!valid.ok()) return valid.status();
    if (*valid < port.port) return FieldError(end_path, "must be greater than or equal to `port`");
    // endPort == port is the single port.
    port.end_port = *valid == port.port ? 0 : *valid;
  }
  return port;
}

absl::StatusOr<std::vector<NetworkPolicyRule>> ParseRules(const json& spec, std::string_view list,
                                                          std::string_view peers_key) {
  std::vector<NetworkPolicyRule> rules;
  std::string list_path = JoinPath("spec", list);
  auto items = ArrayMember(spec, list, list_path);
  if (!items.ok()) return items.status();
  if (*items == nullptr) return rules;
  for (size_t i = 0; i < (*items)->size(); ++i) {
    const json& item = (**items)[i];
    std::string rule_path = IndexPath(list_path, i);
    if (!item.is_object()) {
      return FieldError(rule_path, absl::StrCat("expected an object, got ", std::string(JsonTypeName(item))));
    }
    NetworkPolicyRule rule;
    std::string peers_path = JoinPath(rule_path, peers_key);
    auto peers = ArrayMember(item, peers_key, peers_path);
    if (!peers.ok()) return peers.status();
    if (*peers != nullptr) {
      for (size_t j = 0; j < (*peers)->size(); ++j) {
        auto peer = ParsePeer((**peers)[j], IndexPath(peers_path, j));
        if (!peer.ok()) return peer.status();
        rule.peers.push_back(*std::move(peer));
      }
    }
    std::string ports_path = JoinPath(rule_path, "ports");
    auto ports = ArrayMember(item, "ports", ports_path);
    if (!ports.ok()) return ports.status();
    if (*ports != nullptr) {
      for (size_t j = 0; j < (*ports)->size(); ++j) {
        auto port = ParsePolicyPort((**ports)[j], IndexPath(ports_path, j));
        if (!port.ok()) return port.status();
        rule.ports.push_back(*std::move(port));
      }
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

}  // namespace

absl::StatusOr<Pod> ParsePod(const nlohmann::json& object) {
  auto metadata = ParseMetadata(object, /*namespaced=*/true);
  if (!metadata.ok()) return metadata.status();
  Pod pod;
  pod.namespace_name = metadata->namespace_name;
  pod.name = metadata->name;
  pod.labels = std::move(metadata->labels);

  auto spec = ObjectMember(object, "spec", "spec");
  if (!spec.ok()) return spec.status();
  if (*spec != nullptr) {
    for (const char* list : {"containers", "initContainers"}) {
      if (absl::Status s = ParseContainerPorts(**spec, list, "spec", pod.ports); !s.ok()) return s;
    }
    auto node = StringMember(**spec, "nodeName", "spec.nodeName");
    if (!node.ok()) return node.status();
    if (node->has_value()) pod.node_name = **node;
  }

  auto status = ObjectMember(object, "status", "status");
  if (!status.ok()) return status.status();
  if (*status != nullptr) {
    auto add_ip = [&pod](const std::string& text, std::string_view path) -> absl::Status {
      auto address = IpAddress::Parse(text);
      if (!address.ok()) return FieldError(path, absl::StrCat("invalid IP address \"", text, "\""));
      std::string canonical = address->ToString();
      if (std::find(pod.pod_ips.begin(), pod.pod_ips.end(), canonical) == pod.pod_ips.end()) {
        pod.pod_ips.push_back(canonical);
      }
      return absl::OkStatus();
    };
    auto ips = ArrayMember(**status, "podIPs", "status.podIPs");
    if (!ips.ok()) return ips.status();
    if (*ips != nullptr) {
      for (size_t i = 0; i < (*ips)->size(); ++i) {
        std::string item_path = JoinPath(IndexPath("status.podIPs", i), "ip");
        const json& item = (**ips)[i];
        if (!item.is_object()) return FieldError(IndexPath("status.podIPs", i), "expected an object");
        auto ip = StringMember(item, "ip", item_path);
        if (!ip.ok()) return ip.status();
        if (!ip->has_value()) return FieldError(item_path, "required");
        if (absl::Status s = add_ip(**ip, item_path); !s.ok()) return s;
      }
    }
    auto ip = StringMember(**status, "podIP", "status.podIP");
    if (!ip.ok()) return ip.status();
    if (ip->has_value() && !(*ip)->empty()) {
      if (absl::Status s = add_ip(**ip, "status.podIP"); !s.ok()) return s;
    }
  }
  return pod;
}

absl::StatusOr<Namespace> ParseNamespace(const nlohmann::json& object) {
  auto metadata = ParseMetadata(object, /*namespaced=*/false);
  if (!metadata.ok()) return metadata.status();
  Namespace ns;
  ns.name = metadata->name;
  ns.labels = std::move(metadata->labels);
  // The API server sets it on every Namespace (and overrides any other value).
  ns.labels[kNamespaceNameLabel] = ns.name;
  return ns;
}

absl::StatusOr<NetworkPolicy> ParseNetworkPolicy(const nlohmann::json& object) {
  auto metadata = ParseMetadata(object, /*namespaced=*/true);
  if (!metadata.ok()) return metadata.status();
  NetworkPolicy policy;
  policy.namespace_name = metadata->namespace_name;
  policy.name = metadata->name;

  auto spec = ObjectMember(object, "spec", "spec");
  if (!spec.ok()) return spec.status();
  static const json kEmptySpec = json::object();
  const json& spec_object = *spec != nullptr ? **spec : kEmptySpec;

  if (const json* selector = Member(spec_object, "podSelector"); selector != nullptr) {
    auto parsed = LabelSelector::FromJson(*selector, "spec.podSelector");
    if (!parsed.ok()) return parsed.status();
    policy.pod_selector = *std::move(parsed);
  }
  auto ingress = ParseRules(spec_object, "ingress", "from");
  if (!ingress.ok()) return ingress.status();
  policy.ingress = *std::move(ingress);
  auto egress = ParseRules(spec_object, "egress", "to");
  if (!egress.ok()) return egress.status();
  policy.egress = *std::move(egress);

  auto types = ArrayMember(spec_object, "policyTypes", "spec.policyTypes");
  if (!types.ok()) return types.status();
  if (*types != nullptr && !(*types)->empty()) {
    if ((*types)->size() > 2) return FieldError("spec.policyTypes", "may not specify more than two policyTypes");
    for (size_t i = 0; i < (*types)->size(); ++i) {
      const json& item = (**types)[i];
      std::string item_path = IndexPath("spec.policyTypes", i);
      std::string name = item.is_string() ? item.get<std::string>() : std::string();
      if (name == "Ingress") {
        policy.applies_to_ingress = true;
      } else if (name == "Egress") {
        policy.applies_to_egress = true;
      } else {
        return FieldError(item_path, absl::StrCat("unsupported value ", item.dump(),
                                                  ": supported values: \"Ingress\", \"Egress\""));
      }
    }
  } else {
    // The API server's default (SetDefaults_NetworkPolicy): Ingress always,
    // Egress iff spec.egress has at least one rule ("egress: []" without
    // policyTypes does not isolate egress).
    policy.applies_to_ingress = true;
    policy.applies_to_egress = !policy.egress.empty();
  }
  return policy;
}

}  // namespace ebpfcni::policy::k8s
