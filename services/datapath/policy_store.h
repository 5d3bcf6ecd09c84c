#pragma once
// A copy of every endpoint's policy in the state dir
// (<dir>/<endpoint id>.json), next to the registry. The kernel's pinned
// policy maps are what the programs use; this copy lets a restart put a
// policy back when its pinned map did not survive (a layout change of the
// policy map in an upgrade recreates it empty), instead of leaving the pod
// unisolated.
#include <cstdint>
#include <optional>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "services/datapath/endpoint_policy.h"

namespace ebpfcni::datapath {

class PolicyStore {
 public:
  explicit PolicyStore(std::string dir) : dir_(std::move(dir)) {}

  absl::Status Save(uint32_t endpoint_id, const EndpointPolicy& policy);
  // OK when there was nothing stored.
  absl::Status Remove(uint32_t endpoint_id);
  // nullopt when nothing is stored for the endpoint.
  absl::StatusOr<std::optional<EndpointPolicy>> Load(uint32_t endpoint_id) const;

 private:
  std::string PathOf(uint32_t endpoint_id) const;

  std::string dir_;
};

}  // namespace ebpfcni::datapath
