#pragma once
// The datapath's list of endpoints and their ids: kept in memory, every
// change committed to the state store (state_store.h: one SQLite row per
// endpoint, durable against a crash of the daemon once Put/Remove return).
// Ids are stable per (container id, interface name) for as long as the
// endpoint exists, and are handed out round-robin so a freed id is not
// reused right away (its counters may still be read by a late caller).
#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "services/datapath/tc_attacher.h"

namespace ebpfcni::datapath {

struct EndpointKey {
  std::string container_id;
  std::string interface_name;
  auto operator<=>(const EndpointKey&) const = default;
};

struct EndpointRecord {
  EndpointKey key;
  uint32_t endpoint_id = 0;
  uint32_t host_ifindex = 0;
  std::string host_interface_name;
  std::string netns_path;
  std::vector<std::string> addresses;
  std::string pod_namespace;
  std::string pod_name;
  // Security identity; 0 = not known yet (the endpoint is "init": dropped).
  uint32_t identity = 0;
  // How its programs are attached; kAuto (records of older versions) means
  // the datapath's default.
  TcAttachMode attach_mode = TcAttachMode::kAuto;
  bool operator==(const EndpointRecord&) const = default;
};

class StateStore;

class EndpointRegistry {
 public:
  // Loads the endpoints of `store` (not owned; must outlive the registry).
  // A record that cannot be parsed is an error, not an empty registry:
  // losing track of attached endpoints silently would leak them.
  static absl::StatusOr<std::unique_ptr<EndpointRegistry>> Open(StateStore* store);

  std::optional<EndpointRecord> Find(const EndpointKey& key) const;
  std::optional<EndpointRecord> FindByIfindex(uint32_t ifindex) const;
  std::vector<EndpointRecord> List() const;

  // Inserts or replaces the record for record.key and persists it. The id of
  // an existing key is kept (record.endpoint_id is ignored); a new key gets
  // `preferred_id` when it is non-zero and free, else the next free id.
  // Returns the stored record.
  // Ids in `avoid` are never handed out to a new key.
  absl::StatusOr<EndpointRecord> Put(EndpointRecord record, uint32_t preferred_id = 0,
                                     const std::set<uint32_t>* avoid = nullptr);
  bool IdInUse(uint32_t endpoint_id) const;

  // Forgets the key and persists; false when it was not there.
  absl::StatusOr<bool> Remove(const EndpointKey& key);


 private:
  explicit EndpointRegistry(StateStore* store) : store_(store) {}
  absl::StatusOr<uint32_t> AllocateId(const std::set<uint32_t>* avoid);

  StateStore* store_;
  std::map<EndpointKey, EndpointRecord> records_;
  uint32_t next_id_ = 1;
};

}  // namespace ebpfcni::datapath
