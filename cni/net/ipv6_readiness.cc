#include "cni/net/ipv6_readiness.h"

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <absl/strings/ascii.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>

namespace ebpfcni::net {
namespace {

// Groups joined by ifname, as /proc/net/igmp6 prints them: 32 hex digits.
absl::StatusOr<std::set<std::string>> JoinedGroups(const std::string& ifname) {
  // thread-self: /proc/net follows the thread-group leader's namespace, not
  // the namespace this thread entered with setns().
  std::ifstream in("/proc/thread-self/net/igmp6");
  if (!in) {
    return absl::FailedPreconditionError(
        "cannot read /proc/thread-self/net/igmp6 (IPv6 unavailable?)");
  }
  std::set<std::string> groups;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string index, name, group;
    if (fields >> index >> name >> group && name == ifname) {
      groups.insert(absl::AsciiStrToLower(group));
    }
  }
  return groups;
}

std::string ProcHex(const IpAddress& address) {
  std::string hex;
  for (int i = 0; i < 16; ++i) {
    absl::StrAppend(&hex, absl::Hex(address.data()[i], absl::kZeroPad2));
  }
  return hex;
}

}  // namespace

IpAddress SolicitedNodeGroup(const IpAddress& address) {
  uint8_t bytes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0};
  std::memcpy(bytes + 13, address.data() + 13, 3);
  return IpAddress::FromV6Bytes(bytes);
}

absl::StatusOr<bool> WaitForSolicitedNodeGroups(const std::string& ifname,
                                                const std::vector<IpAddress>& addresses,
                                                std::chrono::milliseconds timeout) {
  std::vector<std::string> wanted;
  for (const IpAddress& address : addresses) {
    if (!address.is_v4()) wanted.push_back(ProcHex(SolicitedNodeGroup(address)));
  }
  if (wanted.empty()) return true;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    absl::StatusOr<std::set<std::string>> joined = JoinedGroups(ifname);
    if (!joined.ok()) return joined.status();
    bool all = true;
    for (const std::string& group : wanted) all = all && joined->count(group) > 0;
    if (all) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace ebpfcni::net
