#pragma once
// Where the etcd identity store keeps things, all under one prefix
// (default /ebpf-cni/identities/):
//   id/<0000000256>              -> labels key      (the identity itself)
//   labels/<labels key>          -> "256"           (uniqueness of a label set)
//   refs/<0000000256>/<owner>    -> ""              (a reference; on its node's lease)
//   nodes/<node>                 -> lease id        (the node's liveness session; on that lease)
//   ipcache/<prefix>             -> "<id> <node>"   (IP prefix -> identity; on the node's lease)
//   unreferenced/<0000000256>    -> unix ms         (since when no reference exists)
//   fence/<lease>                -> unix ms         (marks "now" in the history; ignored)
// Ids are zero-padded so keys sort numerically. id/ and labels/ are always
// created and deleted together in one transaction; allocation compares
// both for create_revision == 0, so neither can be taken twice.
#include <cstdint>
#include <optional>
#include <string>

namespace ebpfcni::identity::etcd {

class KeyLayout {
 public:
  explicit KeyLayout(std::string prefix) : prefix_(std::move(prefix)) {}

  const std::string& prefix() const { return prefix_; }
  std::string IdKey(uint32_t id) const { return prefix_ + "id/" + Padded(id); }
  std::string LabelsKey(const std::string& labels_key) const { return prefix_ + "labels/" + labels_key; }
  std::string RefsPrefix(uint32_t id) const { return prefix_ + "refs/" + Padded(id) + "/"; }
  std::string RefKey(uint32_t id, const std::string& owner) const { return RefsPrefix(id) + owner; }
  std::string MarkerKey(uint32_t id) const { return prefix_ + "unreferenced/" + Padded(id); }
  std::string NodeKey(const std::string& node) const { return prefix_ + "nodes/" + node; }
  std::string IpCacheKey(const std::string& prefix) const { return prefix_ + "ipcache/" + prefix; }

  enum class Kind { kIdentity, kLabels, kRef, kMarker, kNode, kIpCache, kOther };
  struct Parsed {
    Kind kind = Kind::kOther;
    uint32_t id = 0;
    // The node (kNode) or the IP prefix (kIpCache).
    std::string name;
  };
  // Classifies a key under the prefix (kOther for anything unexpected).
  Parsed Parse(const std::string& key) const;

 private:
  static std::string Padded(uint32_t id);
  std::string prefix_;
};

}  // namespace ebpfcni::identity::etcd
