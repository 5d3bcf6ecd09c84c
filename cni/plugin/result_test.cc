#include "cni/plugin/result.h"

#include <gtest/gtest.h>

#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

CniResult DualStack() {
  CniResult result;
  result.interfaces.push_back({"ebpf1234abcd", "aa:bb:cc:00:00:01", "", 1500});
  result.interfaces.push_back({"eth0", "aa:bb:cc:00:00:02", "/var/run/netns/p", 1500});
  result.ips.push_back({IpPrefix(Ip("10.244.0.5"), 32), Ip("10.244.0.1"), 1});
  result.ips.push_back({IpPrefix(Ip("fd00::5"), 128), Ip("fd00::1"), 1});
  result.routes.push_back({*IpPrefix::Parse("0.0.0.0/0"), Ip("10.244.0.1")});
  result.routes.push_back({*IpPrefix::Parse("::/0"), Ip("fd00::1")});
  return result;
}

TEST(ResultTest, Encodes110) {
  nlohmann::json expected = nlohmann::json::parse(R"({
    "cniVersion": "1.1.0",
    "interfaces": [
      {"name": "ebpf1234abcd", "mac": "aa:bb:cc:00:00:01", "mtu": 1500},
      {"name": "eth0", "mac": "aa:bb:cc:00:00:02", "sandbox": "/var/run/netns/p", "mtu": 1500}],
    "ips": [
      {"address": "10.244.0.5/32", "gateway": "10.244.0.1", "interface": 1},
      {"address": "fd00::5/128", "gateway": "fd00::1", "interface": 1}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}, {"dst": "::/0", "gw": "fd00::1"}],
    "dns": {}
  })");
  EXPECT_EQ(EncodeResult(DualStack(), "1.1.0"), expected);
}

TEST(ResultTest, Encodes100WithoutVersionOrMtu) {
  nlohmann::json json = EncodeResult(DualStack(), "1.0.0");
  EXPECT_EQ(json["cniVersion"], "1.0.0");
  for (const auto& ip : json["ips"]) EXPECT_FALSE(ip.contains("version")) << ip;
  for (const auto& iface : json["interfaces"]) EXPECT_FALSE(iface.contains("mtu")) << iface;
  EXPECT_EQ(json["interfaces"][1]["sandbox"], "/var/run/netns/p");
  EXPECT_FALSE(json["interfaces"][0].contains("sandbox"));
}

TEST(ResultTest, EncodesPre100WithIpVersion) {
  for (const char* version : {"0.3.0", "0.3.1", "0.4.0"}) {
    nlohmann::json json = EncodeResult(DualStack(), version);
    EXPECT_EQ(json["cniVersion"], version);
    EXPECT_EQ(json["ips"][0]["version"], "4") << version;
    EXPECT_EQ(json["ips"][1]["version"], "6") << version;
    EXPECT_EQ(json["ips"][0]["interface"], 1);
    EXPECT_FALSE(json["interfaces"][1].contains("mtu"));
  }
}

TEST(ResultTest, RoundTripsEveryVersion) {
  for (const char* version : {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
    absl::StatusOr<CniResult> decoded = DecodeResult(EncodeResult(DualStack(), version));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_EQ(decoded->ips.size(), 2u);
    EXPECT_EQ(decoded->ips[1].address.ToString(), "fd00::5/128");
    EXPECT_EQ(decoded->ips[0].gateway->ToString(), "10.244.0.1");
    EXPECT_EQ(decoded->interfaces[1].sandbox, "/var/run/netns/p");
    ASSERT_EQ(decoded->routes.size(), 2u);
    EXPECT_EQ(decoded->routes[1].dst.ToString(), "::/0");
  }
}

TEST(ResultTest, DecodesResultsFromOtherPluginsAndIgnoresUnknownKeys) {
  absl::StatusOr<CniResult> decoded = DecodeResult(nlohmann::json::parse(R"({
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "cni0", "mac": "x"}, {"name": "eth0", "sandbox": "/proc/1/ns/net", "extra": 1}],
    "ips": [{"version": "4", "address": "10.1.0.7/24", "interface": 1}],
    "dns": {"nameservers": ["10.96.0.10"]},
    "somethingNew": true
  })"));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->ips[0].address.ToString(), "10.1.0.7/24");
  EXPECT_FALSE(decoded->ips[0].gateway.has_value());
  EXPECT_EQ(decoded->dns["nameservers"][0], "10.96.0.10");
}

TEST(ResultTest, BadPrevResultIsCode6) {
  for (const char* bad : {
           R"([])",
           R"({"ips": {}})",
           R"({"ips": [{"address": "10.0.0.1"}]})",
           R"({"ips": [{"address": "nope/32"}]})",
           R"({"ips": [{"address": "10.0.0.1/32", "gateway": 5}]})",
           R"({"ips": [{"address": "10.0.0.1/32", "interface": 3}]})",
           R"({"interfaces": [{"name": 1}]})",
           R"({"routes": [{"gw": "10.0.0.1"}]})",
       }) {
    absl::StatusOr<CniResult> decoded = DecodeResult(nlohmann::json::parse(bad));
    ASSERT_FALSE(decoded.ok()) << bad;
    EXPECT_EQ(CniCodeFor(decoded.status()), code::kDecodingFailure) << bad;
  }
}

}  // namespace
}  // namespace ebpfcni::cni
