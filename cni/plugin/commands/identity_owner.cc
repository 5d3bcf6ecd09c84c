// The owner under which an attachment holds its identity reference.
#include <limits.h>
#include <unistd.h>

#include <absl/strings/str_cat.h>

#include "cni/plugin/commands/commands.h"

namespace ebpfcni::cni {
namespace {

// The kernel's host name (the node name unless kubelet overrides it). A
// failure leaves it empty; the identity service then rejects the owner with
// INVALID_ARGUMENT, which names the problem better than guessing a name.
std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

}  // namespace

identity::v1::Owner IdentityOwnerFor(const CniEnvironment& env) {
  return IdentityOwnerFor(env.container_id, env.ifname);
}

identity::v1::Owner IdentityOwnerFor(const std::string& container_id, const std::string& ifname) {
  identity::v1::Owner owner;
  owner.set_node(HostName());
  owner.set_endpoint(absl::StrCat(container_id, "/", ifname));
  return owner;
}

}  // namespace ebpfcni::cni
