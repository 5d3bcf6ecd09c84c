#pragma once
// Kernel parameters through /proc/sys. Network sysctls resolve against the
// network namespace of the thread that opens the file, so pod-side settings
// are read/written from inside InNetns().
//
// Keys are slash-separated paths below /proc/sys ("net/ipv4/ip_forward",
// "net/ipv6/conf/eth0/disable_ipv6") because dotted keys are ambiguous for
// interface names that contain dots (VLANs such as eth0.100).
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace ebpfcni::net {

// Value with surrounding whitespace removed. NOT_FOUND when the key does not
// exist (e.g. IPv6 disabled at boot, or no such interface).
absl::StatusOr<std::string> ReadSysctl(const std::string& key);

absl::Status WriteSysctl(const std::string& key, const std::string& value);

// Writes value only when the current value differs, so repeated setups do
// not generate needless writes (and work on read-only values already set).
absl::Status EnsureSysctl(const std::string& key, const std::string& value);

}  // namespace ebpfcni::net
