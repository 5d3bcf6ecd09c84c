// CNI STATUS (spec 1.1): can this plugin service ADD right now?
// All three services (and the policy agent when policySocket is set) must
// answer grpc.health.v1 with SERVING within the deadline, and every IPAM
// pool must have a free address (a dual-stack ADD needs one of each). Any "no" is code 50 (plugin not available): none of
// these conditions affects pods that are already running, so 51 (limited
// connectivity for existing containers) does not apply.
#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "cni/plugin/commands/commands.h"
#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

absl::Status NotAvailable(const absl::Status& cause) {
  return CniStatus(code::kPluginNotAvailable, cause.message());
}

}  // namespace

absl::Status RunStatus(CommandContext& context) {
  if (absl::Status s = context.ipam.CheckHealth(); !s.ok()) return NotAvailable(s);
  if (absl::Status s = context.datapath.CheckHealth(); !s.ok()) return NotAvailable(s);
  // Without the identity service ADD cannot give a pod an identity (and
  // fails), so it is as much a precondition as the other two.
  if (absl::Status s = context.identity.CheckHealth(); !s.ok()) return NotAvailable(s);
  // With policySocket every ADD goes through the policy agent.
  if (context.policy != nullptr) {
    if (absl::Status s = context.policy->CheckHealth(); !s.ok()) return NotAvailable(s);
  }
  absl::StatusOr<std::vector<ipam::v1::Pool>> pools = context.ipam.ListPools();
  if (!pools.ok()) return NotAvailable(pools.status());
  if (pools->empty()) {
    return CniStatus(code::kPluginNotAvailable,
                     absl::StrCat("IPAM at ", context.ipam.target(),
                                  " has no address pool configured (--pool_cidr / --pool_cidr6)"));
  }
  for (const ipam::v1::Pool& pool : *pools) {
    if (pool.allocated() >= pool.capacity()) {
      return CniStatus(code::kPluginNotAvailable,
                       absl::StrCat("no IP addresses available: pool ", pool.name(), " (", pool.cidr(),
                                    ") has all ", pool.capacity(), " addresses allocated"));
    }
  }
  spdlog::debug("STATUS: ready");
  return absl::OkStatus();
}

}  // namespace ebpfcni::cni
