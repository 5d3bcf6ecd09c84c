#include "cni/net/interface_name.h"

#include <cstdint>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>

#include "cni/net/pod_network.h"

namespace ebpfcni::net {

absl::Status ValidateInterfaceName(absl::string_view name, absl::string_view field) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (name.size() > kMaxInterfaceNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", name, "\" is longer than ",
                                                   kMaxInterfaceNameLength, " characters"));
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", name, "\" is not allowed"));
  }
  for (char c : name) {
    if (c == '/' || c == ':' || absl::ascii_isspace(static_cast<unsigned char>(c)) ||
        !absl::ascii_isprint(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", name, "\" contains a character not allowed in interface names"));
    }
  }
  return absl::OkStatus();
}

namespace {

// FNV-1a: tiny, and stable across processes, builds and library versions,
// which std::hash and absl::Hash do not promise. DEL must recompute the same
// name as ADD, possibly from a newer binary.
uint64_t Fnv1a64(absl::string_view data) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

// Keeps at least 8 hex digits (32 bits) of hash in the name so distinct
// attachments on one node practically never collide.
constexpr size_t kMaxPrefixLength = kMaxInterfaceNameLength - 8;

}  // namespace

std::string HostVethName(const std::string& prefix, const std::string& container_id,
                         const std::string& container_ifname) {
  std::string name = prefix.substr(0, kMaxPrefixLength);
  std::string hex = absl::StrCat(absl::Hex(Fnv1a64(container_id + "/" + container_ifname),
                                           absl::kZeroPad16));
  name += hex.substr(0, kMaxInterfaceNameLength - name.size());
  return name;
}

}  // namespace ebpfcni::net
