#pragma once
// Looks up network interfaces of the datapath's own network namespace (the
// host namespace, where pods' host-side veths live).
#include <cstdint>
#include <optional>
#include <string>

namespace ebpfcni::datapath {

// The interface's current name, or nullopt when no interface has that index.
std::optional<std::string> InterfaceName(uint32_t ifindex);

// True when `ifindex` still names the interface recorded as `name`. Guards
// against acting on an unrelated interface that reused a freed ifindex.
bool InterfaceStillNamed(uint32_t ifindex, const std::string& name);

}  // namespace ebpfcni::datapath
