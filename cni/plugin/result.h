#pragma once
// The CNI result (SPEC.md "Success" section) as values, encoded in the
// version the runtime asked for and decoded from prevResult.
//
// Format differences handled here:
//   0.3.0, 0.3.1, 0.4.0: ips[] carry "version": "4"|"6".
//   1.0.0, 1.1.0:        no "version" in ips.
//   1.1.0:               interfaces[] may carry "mtu".
// 0.1.0/0.2.0 (ip4/ip6 objects) are not supported (rejected earlier).
#include <optional>
#include <string>
#include <absl/strings/string_view.h>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "common/net/ip_address.h"

namespace ebpfcni::cni {

struct ResultInterface {
  std::string name;
  std::string mac;
  // Netns path for interfaces inside the container; empty on the host.
  std::string sandbox;
  std::optional<int> mtu;
};

struct ResultIp {
  // The address with its prefix length as configured (/32, /128 here).
  IpPrefix address;
  std::optional<IpAddress> gateway;
  // Index into interfaces.
  std::optional<int> interface;
};

struct ResultRoute {
  IpPrefix dst;
  std::optional<IpAddress> gw;
};

struct CniResult {
  std::vector<ResultInterface> interfaces;
  std::vector<ResultIp> ips;
  std::vector<ResultRoute> routes;
  // Passed through as-is; we never set DNS ourselves ({}).
  nlohmann::json dns = nlohmann::json::object();
};

// Encodes for cni_version (one of SupportedCniVersions()).
nlohmann::json EncodeResult(const CniResult& result, absl::string_view cni_version);

// Decodes a result in any supported format (prevResult). Unknown keys are
// ignored; malformed addresses or wrong types are INVALID_ARGUMENT with CNI
// code 6.
absl::StatusOr<CniResult> DecodeResult(const nlohmann::json& json);

}  // namespace ebpfcni::cni
