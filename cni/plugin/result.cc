#include "cni/plugin/result.h"

#include <absl/strings/str_cat.h>

#include "cni/plugin/errors.h"
#include "cni/plugin/version.h"

namespace ebpfcni::cni {
namespace {

absl::Status DecodeError(absl::string_view message) {
  return CniStatus(code::kDecodingFailure, absl::StrCat("prevResult: ", message));
}

// Optional string member; error when present with another type.
absl::StatusOr<std::string> OptionalString(const nlohmann::json& object, const char* key,
                                           absl::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) return DecodeError(absl::StrCat(where, ".", key, " must be a string"));
  return it->get<std::string>();
}

absl::StatusOr<std::vector<ResultInterface>> DecodeInterfaces(const nlohmann::json& json) {
  std::vector<ResultInterface> interfaces;
  auto it = json.find("interfaces");
  if (it == json.end() || it->is_null()) return interfaces;
  if (!it->is_array()) return DecodeError("interfaces must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& entry = (*it)[i];
    std::string where = absl::StrCat("interfaces[", i, "]");
    if (!entry.is_object()) return DecodeError(absl::StrCat(where, " must be an object"));
    ResultInterface iface;
    absl::StatusOr<std::string> name = OptionalString(entry, "name", where);
    if (!name.ok()) return name.status();
    absl::StatusOr<std::string> mac = OptionalString(entry, "mac", where);
    if (!mac.ok()) return mac.status();
    absl::StatusOr<std::string> sandbox = OptionalString(entry, "sandbox", where);
    if (!sandbox.ok()) return sandbox.status();
    iface.name = *name;
    iface.mac = *mac;
    iface.sandbox = *sandbox;
    if (auto mtu = entry.find("mtu"); mtu != entry.end() && !mtu->is_null()) {
      if (!mtu->is_number_integer()) return DecodeError(absl::StrCat(where, ".mtu must be an integer"));
      iface.mtu = mtu->get<int>();
    }
    interfaces.push_back(std::move(iface));
  }
  return interfaces;
}

absl::StatusOr<std::optional<IpAddress>> OptionalAddress(const nlohmann::json& object, const char* key,
                                                         absl::string_view where) {
  absl::StatusOr<std::string> text = OptionalString(object, key, where);
  if (!text.ok()) return text.status();
  if (text->empty()) return std::optional<IpAddress>();
  absl::StatusOr<IpAddress> address = IpAddress::Parse(*text);
  if (!address.ok()) {
    return DecodeError(absl::StrCat(where, ".", key, " \"", *text, "\" is not an IP address"));
  }
  return std::optional<IpAddress>(*address);
}

absl::StatusOr<IpPrefix> RequiredPrefix(const nlohmann::json& object, const char* key,
                                        absl::string_view where) {
  absl::StatusOr<std::string> text = OptionalString(object, key, where);
  if (!text.ok()) return text.status();
  if (text->empty()) return DecodeError(absl::StrCat(where, ".", key, " is required"));
  absl::StatusOr<IpPrefix> prefix = IpPrefix::Parse(*text);
  if (!prefix.ok()) {
    return DecodeError(absl::StrCat(where, ".", key, " \"", *text, "\" is not a CIDR (address/length)"));
  }
  return *prefix;
}

absl::StatusOr<std::vector<ResultIp>> DecodeIps(const nlohmann::json& json, size_t interface_count) {
  std::vector<ResultIp> ips;
  auto it = json.find("ips");
  if (it == json.end() || it->is_null()) return ips;
  if (!it->is_array()) return DecodeError("ips must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& entry = (*it)[i];
    std::string where = absl::StrCat("ips[", i, "]");
    if (!entry.is_object()) return DecodeError(absl::StrCat(where, " must be an object"));
    ResultIp ip;
    absl::StatusOr<IpPrefix> address = RequiredPrefix(entry, "address", where);
    if (!address.ok()) return address.status();
    ip.address = *address;
    absl::StatusOr<std::optional<IpAddress>> gateway = OptionalAddress(entry, "gateway", where);
    if (!gateway.ok()) return gateway.status();
    ip.gateway = *gateway;
    if (auto index = entry.find("interface"); index != entry.end() && !index->is_null()) {
      if (!index->is_number_integer()) {
        return DecodeError(absl::StrCat(where, ".interface must be an integer"));
      }
      int value = index->get<int>();
      if (value < 0 || static_cast<size_t>(value) >= interface_count) {
        return DecodeError(absl::StrCat(where, ".interface ", value, " does not index interfaces[]"));
      }
      ip.interface = value;
    }
    ips.push_back(std::move(ip));
  }
  return ips;
}

absl::StatusOr<std::vector<ResultRoute>> DecodeRoutes(const nlohmann::json& json) {
  std::vector<ResultRoute> routes;
  auto it = json.find("routes");
  if (it == json.end() || it->is_null()) return routes;
  if (!it->is_array()) return DecodeError("routes must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& entry = (*it)[i];
    std::string where = absl::StrCat("routes[", i, "]");
    if (!entry.is_object()) return DecodeError(absl::StrCat(where, " must be an object"));
    ResultRoute route;
    absl::StatusOr<IpPrefix> dst = RequiredPrefix(entry, "dst", where);
    if (!dst.ok()) return dst.status();
    route.dst = *dst;
    absl::StatusOr<std::optional<IpAddress>> gw = OptionalAddress(entry, "gw", where);
    if (!gw.ok()) return gw.status();
    route.gw = *gw;
    routes.push_back(std::move(route));
  }
  return routes;
}

}  // namespace

nlohmann::json EncodeResult(const CniResult& result, absl::string_view cni_version) {
  // Pre-1.0 results tag every address with its family.
  const bool with_ip_version = !CniVersionAtLeast(cni_version, "1.0.0");
  const bool with_interface_mtu = CniVersionAtLeast(cni_version, "1.1.0");

  nlohmann::json out = {{"cniVersion", std::string(cni_version)}};
  nlohmann::json interfaces = nlohmann::json::array();
  for (const ResultInterface& iface : result.interfaces) {
    nlohmann::json entry = {{"name", iface.name}};
    if (!iface.mac.empty()) entry["mac"] = iface.mac;
    if (!iface.sandbox.empty()) entry["sandbox"] = iface.sandbox;
    if (with_interface_mtu && iface.mtu) entry["mtu"] = *iface.mtu;
    interfaces.push_back(std::move(entry));
  }
  out["interfaces"] = std::move(interfaces);

  nlohmann::json ips = nlohmann::json::array();
  for (const ResultIp& ip : result.ips) {
    nlohmann::json entry;
    if (with_ip_version) entry["version"] = ip.address.address().is_v4() ? "4" : "6";
    entry["address"] = ip.address.ToString();
    if (ip.gateway) entry["gateway"] = ip.gateway->ToString();
    if (ip.interface) entry["interface"] = *ip.interface;
    ips.push_back(std::move(entry));
  }
  out["ips"] = std::move(ips);

  nlohmann::json routes = nlohmann::json::array();
  for (const ResultRoute& route : result.routes) {
    nlohmann::json entry = {{"dst", route.dst.ToString()}};
    if (route.gw) entry["gw"] = route.gw->ToString();
    routes.push_back(std::move(entry));
  }
  out["routes"] = std::move(routes);
  out["dns"] = result.dns.is_object() ? result.dns : nlohmann::json::object();
  return out;
}

absl::StatusOr<CniResult> DecodeResult(const nlohmann::json& json) {
  if (!json.is_object()) return DecodeError("must be a JSON object");
  CniResult result;
  absl::StatusOr<std::vector<ResultInterface>> interfaces = DecodeInterfaces(json);
  if (!interfaces.ok()) return interfaces.status();
  result.interfaces = std::move(*interfaces);
  absl::StatusOr<std::vector<ResultIp>> ips = DecodeIps(json, result.interfaces.size());
  if (!ips.ok()) return ips.status();
  result.ips = std::move(*ips);
  absl::StatusOr<std::vector<ResultRoute>> routes = DecodeRoutes(json);
  if (!routes.ok()) return routes.status();
  result.routes = std::move(*routes);
  if (auto dns = json.find("dns"); dns != json.end() && dns->is_object()) result.dns = *dns;
  return result;
}

}  // namespace ebpfcni::cni
