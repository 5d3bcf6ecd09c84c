#include "services/identity/etcd/etcd_key_layout.h"

#include <cstdio>

#include <absl/strings/match.h>
#include <absl/strings/numbers.h>

namespace ebpfcni::identity::etcd {
namespace {

constexpr size_t kPaddedWidth = 10;  // every uint32 fits

// Reads the padded id at the start of `rest`; false when malformed.
bool ParsePaddedId(std::string_view rest, uint32_t& id) {
  if (rest.size() < kPaddedWidth) return false;
  return absl::SimpleAtoi(absl::string_view(rest.data(), kPaddedWidth), &id);
}

}  // namespace

std::string KeyLayout::Padded(uint32_t id) {
  char buffer[kPaddedWidth + 1];
  std::snprintf(buffer, sizeof(buffer), "%010u", id);
  return buffer;
}

KeyLayout::Parsed KeyLayout::Parse(const std::string& key) const {
  Parsed parsed;
  if (!absl::StartsWith(key, prefix_)) return parsed;
  std::string_view rest(key);
  rest.remove_prefix(prefix_.size());
  auto strip = [&rest](std::string_view head) {
    if (rest.substr(0, head.size()) != head) return false;
    rest.remove_prefix(head.size());
    return true;
  };
  if (strip("labels/")) {
    parsed.kind = Kind::kLabels;
  } else if (strip("id/")) {
    if (rest.size() == kPaddedWidth && ParsePaddedId(rest, parsed.id)) parsed.kind = Kind::kIdentity;
  } else if (strip("refs/")) {
    if (rest.size() > kPaddedWidth && rest[kPaddedWidth] == '/' && ParsePaddedId(rest, parsed.id)) {
      parsed.kind = Kind::kRef;
    }
  } else if (strip("unreferenced/")) {
    if (rest.size() == kPaddedWidth && ParsePaddedId(rest, parsed.id)) parsed.kind = Kind::kMarker;
  } else if (strip("nodes/")) {
    if (!rest.empty()) parsed = {Kind::kNode, 0, std::string(rest)};
  } else if (strip("ipcache/")) {
    if (!rest.empty()) parsed = {Kind::kIpCache, 0, std::string(rest)};
  }
  return parsed;
}

}  // namespace ebpfcni::identity::etcd
