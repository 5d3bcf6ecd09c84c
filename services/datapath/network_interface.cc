#include "services/datapath/network_interface.h"

#include <net/if.h>

namespace ebpfcni::datapath {

std::optional<std::string> InterfaceName(uint32_t ifindex) {
  if (ifindex == 0) return std::nullopt;
  char name[IF_NAMESIZE] = {};
  if (if_indextoname(ifindex, name) == nullptr) return std::nullopt;
  return std::string(name);
}

bool InterfaceStillNamed(uint32_t ifindex, const std::string& name) {
  std::optional<std::string> current = InterfaceName(ifindex);
  return current.has_value() && *current == name;
}

}  // namespace ebpfcni::datapath
