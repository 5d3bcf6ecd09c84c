#pragma once
// Linux interface-name rules, checked before talking to the kernel so the
// caller gets INVALID_ARGUMENT naming the field instead of a bare EINVAL.
#include <string>
#include <absl/strings/string_view.h>

#include <absl/status/status.h>

namespace ebpfcni::net {

// IFNAMSIZ - 1: the kernel rejects longer names.
inline constexpr size_t kMaxInterfaceNameLength = 15;

// Non-empty, at most 15 bytes, not "." or "..", no '/', ':' or whitespace
// (the kernel's dev_valid_name plus ':' which alias syntax reserves).
// field names the value in the error, e.g. "container_ifname".
absl::Status ValidateInterfaceName(absl::string_view name, absl::string_view field);

}  // namespace ebpfcni::net
