#include "services/datapath/bpf_objects.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "ebpfcni/datapath_abi.h"
#include "endpoint_bpf.skel.h"
#include "services/datapath/bpf_map_util.h"
#include "services/datapath/conntrack_map.h"
#include "services/datapath/ipcache_map.h"
#include "services/datapath/policy_map.h"

namespace ebpfcni::datapath {
namespace {

// Routes libbpf's own diagnostics (verifier log, pin reuse messages) to our
// logger instead of raw stderr.
int LibbpfPrint(libbpf_print_level level, const char* format, va_list args) {
  char buffer[2048];
  int n = std::vsnprintf(buffer, sizeof(buffer), format, args);
  std::string_view text(buffer, n < 0 ? 0 : std::min<size_t>(n, sizeof(buffer) - 1));
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  // Netlink's extended ack for expected conditions (no filter yet when we
  // query, clsact already there when we create it) is not worth a warning;
  // real failures come back as errors from our own calls.
  if (level == LIBBPF_WARN && text.find("Kernel error message:") != std::string_view::npos) {
    level = LIBBPF_DEBUG;
  }
  switch (level) {
    case LIBBPF_WARN:
      spdlog::warn("libbpf: {}", text);
      break;
    case LIBBPF_INFO:
      spdlog::debug("libbpf: {}", text);
      break;
    case LIBBPF_DEBUG:
      spdlog::trace("libbpf: {}", text);
      break;
  }
  return n;
}


// Id of the program pinned at `path`, 0 when there is none.
uint32_t PinnedProgramId(const std::string& path) {
  ScopedFd fd(bpf_obj_get(path.c_str()));
  if (fd.get() < 0) return 0;
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &length) != 0) return 0;
  return info.id;
}

uint32_t ProgramId(const bpf_program* program) {
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(program), &info, &length) != 0) return 0;
  return info.id;
}

// Points the map at its pin so that load reuses it; first drops a pin whose
// layout no longer matches (libbpf would otherwise refuse to load at all).
absl::Status PrepareMapPin(bpf_map* map, const std::string& pin_dir) {
  std::string path = absl::StrCat(pin_dir, "/", bpf_map__name(map));
  ScopedFd pinned(bpf_obj_get(path.c_str()));
  if (pinned.get() >= 0) {
    bpf_map_info info{};
    uint32_t length = sizeof(info);
    if (bpf_obj_get_info_by_fd(pinned.get(), &info, &length) != 0) {
      return BpfErrno(absl::StrCat("reading pinned map ", path), errno);
    }
    bool compatible = info.type == static_cast<uint32_t>(bpf_map__type(map)) &&
                      info.key_size == bpf_map__key_size(map) &&
                      info.value_size == bpf_map__value_size(map) &&
                      info.max_entries == bpf_map__max_entries(map) &&
                      info.map_flags == bpf_map__map_flags(map);
    if (!compatible) {
      spdlog::warn("pinned map {} has a different layout than this build; "
                   "recreating it empty (its entries are lost)", path);
      if (unlink(path.c_str()) != 0) {
        return BpfErrno(absl::StrCat("removing incompatible pinned map ", path), errno);
      }
    } else {
      spdlog::info("reusing pinned map {} (id {})", path, info.id);
    }
  }
  if (int err = bpf_map__set_pin_path(map, path.c_str()); err != 0) {
    return BpfErrno(absl::StrCat("setting pin path ", path), -err);
  }
  return absl::OkStatus();
}

// Maps earlier builds pinned that this one replaced: `conntrack` (one table
// for both families, keyed by endpoint id) became conntrack4/conntrack6
// keyed by interface. Their pins go once the new programs are loaded; the
// old programs still attached keep the old maps alive until their filters
// are swapped.
// `policy_stats` (a per-CPU hash by endpoint and rule key) became the
// policy_counters array, indexed by a slot in each policy entry; its counts
// are carried over first (PolicyMap::AdoptCounterSlots).
constexpr const char* kRetiredMapPins[] = {"conntrack", "policy_stats"};

// The pinned policy_stats map of an earlier version, if there is one with
// the layout that version had; -1 otherwise.
int OpenLegacyPolicyStats(const std::string& pin_dir) {
  std::string path = absl::StrCat(pin_dir, "/policy_stats");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return -1;
  bpf_map_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &length) != 0 ||
      info.type != BPF_MAP_TYPE_PERCPU_HASH ||
      info.key_size != sizeof(ebpfcni_policy_stats_key) ||
      info.value_size != sizeof(ebpfcni_packet_counter)) {
    close(fd);
    return -1;
  }
  return fd;
}

void RemoveRetiredPins(const std::string& pin_dir) {
  for (const char* name : kRetiredMapPins) {
    std::string path = absl::StrCat(pin_dir, "/", name);
    if (unlink(path.c_str()) == 0) {
      spdlog::warn("removed pinned map {} of an earlier version (its entries are not carried over)",
                   path);
    } else if (errno != ENOENT) {
      spdlog::warn("removing pinned map {} of an earlier version: {}", path, std::strerror(errno));
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpfObjects>> BpfObjects::Load(const std::string& pin_dir) {
  BpfLoadOptions options;
  options.pin_dir = pin_dir;
  return Load(options);
}

absl::StatusOr<std::unique_ptr<BpfObjects>> BpfObjects::Load(const BpfLoadOptions& options) {
  const std::string& pin_dir = options.pin_dir;
  if (options.policy_counter_slots < 2 ||
      options.policy_counter_slots > EBPFCNI_POLICY_COUNTER_SLOTS_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy counter slots must be between 2 and ", EBPFCNI_POLICY_COUNTER_SLOTS_MAX,
        " (slot 0 means 'not counted'), not ", options.policy_counter_slots));
  }
  libbpf_set_print(LibbpfPrint);
  endpoint_bpf* skeleton = endpoint_bpf__open();
  if (skeleton == nullptr) {
    return BpfErrno("opening the embedded BPF object", errno);
  }
  std::unique_ptr<BpfObjects> objects(new BpfObjects(skeleton));
  skeleton->rodata->ct_lifetime_tcp_established_ns = options.conntrack.tcp_established_ns;
  skeleton->rodata->ct_lifetime_tcp_syn_ns = options.conntrack.tcp_syn_ns;
  skeleton->rodata->ct_lifetime_tcp_closing_ns = options.conntrack.tcp_closing_ns;
  skeleton->rodata->ct_lifetime_other_ns = options.conntrack.other_ns;
  if (int err = bpf_map__set_max_entries(skeleton->maps.policy_counters,
                                         options.policy_counter_slots);
      err != 0) {
    return BpfErrno("sizing the policy counters", -err);
  }
  objects->policy_counter_slots_ =
      std::make_unique<PolicyCounterSlots>(options.policy_counter_slots);

  std::string progs_dir = absl::StrCat(pin_dir, "/progs");
  if (!pin_dir.empty()) {
    objects->previous_program_ids_.from_container =
        PinnedProgramId(progs_dir + "/from_container");
    objects->previous_program_ids_.to_container = PinnedProgramId(progs_dir + "/to_container");
    bpf_map* map;
    bpf_object__for_each_map(map, skeleton->obj) {
      // .rodata and friends belong to this load only (and their names have
      // a dot, which bpffs refuses).
      if (bpf_map__is_internal(map)) continue;
      if (absl::Status status = PrepareMapPin(map, pin_dir); !status.ok()) return status;
    }
  }

  // Loading also creates the maps, reusing pins and pinning new ones.
  if (int err = endpoint_bpf__load(skeleton); err != 0) {
    return absl::InternalError(absl::StrCat(
        "loading BPF programs failed: ", std::strerror(-err),
        " (the libbpf messages above have the verifier log; needs root/CAP_BPF)"));
  }
  // Before any program of this load is attached: they read the array, and
  // an earlier version (or a crash between the two writes) may have left it
  // behind the hash.
  if (absl::Status status = objects->SyncEndpointArray(); !status.ok()) return status;
  objects->program_ids_.from_container = ProgramId(skeleton->progs.from_container);
  objects->program_ids_.to_container = ProgramId(skeleton->progs.to_container);

  if (!pin_dir.empty()) {
    // Reused policy maps hold counter slots: claim them before anyone hands
    // out new ones, and give slots to entries of earlier versions.
    ScopedFd legacy_stats(OpenLegacyPolicyStats(pin_dir));
    if (absl::Status status = PolicyMap(*objects).AdoptCounterSlots(legacy_stats.get());
        !status.ok()) {
      return status;
    }
    absl::StatusOr<size_t> adopted = IpCacheMap(*objects).AdoptEarlierIpv4Entries();
    if (!adopted.ok()) return adopted.status();
    if (*adopted > 0) {
      spdlog::info("ipcache: {} whole IPv4 addresses of an earlier version copied to ipcache4",
                   *adopted);
    }
    if (absl::Status status = objects->PinPrograms(progs_dir); !status.ok()) return status;
    RemoveRetiredPins(pin_dir);
  }
  return objects;
}

BpfObjects::~BpfObjects() { endpoint_bpf__destroy(skeleton_); }

absl::Status BpfObjects::PinPrograms(const std::string& progs_dir) {
  std::error_code ec;
  std::filesystem::create_directories(progs_dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("creating ", progs_dir, ": ", ec.message()));
  }
  for (bpf_program* program : {skeleton_->progs.from_container, skeleton_->progs.to_container}) {
    // Pin under a temporary name and rename over the old pin, so the pin
    // path always names a program (the old or the new one).
    std::string final_path = absl::StrCat(progs_dir, "/", bpf_program__name(program));
    // bpffs refuses names with a '.', hence no ".new" suffix.
    std::string temp_path = final_path + "_new";
    unlink(temp_path.c_str());
    if (int err = bpf_program__pin(program, temp_path.c_str()); err != 0) {
      return BpfErrno(absl::StrCat("pinning program at ", temp_path), -err);
    }
    if (rename(temp_path.c_str(), final_path.c_str()) != 0) {
      int err = errno;
      unlink(temp_path.c_str());
      return BpfErrno(absl::StrCat("renaming program pin to ", final_path), err);
    }
  }
  return absl::OkStatus();
}

int BpfObjects::from_container_fd() const {
  return bpf_program__fd(skeleton_->progs.from_container);
}
int BpfObjects::to_container_fd() const { return bpf_program__fd(skeleton_->progs.to_container); }
int BpfObjects::ifindex_map_fd() const { return bpf_map__fd(skeleton_->maps.endpoint_ifidx); }
int BpfObjects::endpoint_array_fd() const { return bpf_map__fd(skeleton_->maps.endpoint_array); }
int BpfObjects::counters_map_fd() const { return bpf_map__fd(skeleton_->maps.endpoint_stats); }
int BpfObjects::policy_maps_fd() const { return bpf_map__fd(skeleton_->maps.policy_maps); }
int BpfObjects::policy_counters_fd() const {
  return bpf_map__fd(skeleton_->maps.policy_counters);
}
int BpfObjects::ipcache_fd() const { return bpf_map__fd(skeleton_->maps.ipcache); }
int BpfObjects::ipcache4_fd() const { return bpf_map__fd(skeleton_->maps.ipcache4); }
int BpfObjects::ipcache_exact_fd() const { return bpf_map__fd(skeleton_->maps.ipcache_exact); }
int BpfObjects::conntrack4_fd() const { return bpf_map__fd(skeleton_->maps.conntrack4); }
int BpfObjects::conntrack6_fd() const { return bpf_map__fd(skeleton_->maps.conntrack6); }
int BpfObjects::events_fd() const { return bpf_map__fd(skeleton_->maps.events); }
int BpfObjects::metrics_fd() const { return bpf_map__fd(skeleton_->maps.metrics); }

absl::StatusOr<std::vector<PacketCount>> BpfObjects::ReadMetrics() const {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return BpfErrno("counting possible CPUs", -cpus);
  std::vector<ebpfcni_packet_counter> per_cpu(cpus);
  std::vector<PacketCount> sums(EBPFCNI_METRIC_MAX);
  for (uint32_t slot = 0; slot < EBPFCNI_METRIC_MAX; ++slot) {
    if (bpf_map_lookup_elem(metrics_fd(), &slot, per_cpu.data()) != 0) {
      return BpfErrno(absl::StrCat("reading metrics slot ", slot), errno);
    }
    for (const ebpfcni_packet_counter& c : per_cpu) {
      sums[slot].packets += c.packets;
      sums[slot].bytes += c.bytes;
    }
  }
  return sums;
}

absl::Status BpfObjects::SetEndpointForIfindex(uint32_t ifindex, uint32_t endpoint_id,
                                               uint32_t identity) {
  absl::StatusOr<std::optional<uint32_t>> previous = EndpointForIfindex(ifindex);
  if (!previous.ok()) return previous.status();
  ebpfcni_endpoint_info info{};
  info.endpoint_id = endpoint_id;
  info.identity = identity;
  if (bpf_map_update_elem(ifindex_map_fd(), &ifindex, &info, BPF_ANY) != 0) {
    return BpfErrno(absl::StrCat("writing ifindex ", ifindex, " -> endpoint ", endpoint_id), errno);
  }
  if (absl::Status status = MirrorToEndpointArray(ifindex, info); !status.ok()) return status;
  if (previous->has_value() && **previous != endpoint_id) {
    // The interface changed hands without RemoveIfindex: the previous
    // endpoint's flows (keyed by interface) must not pass the new one's
    // packets. After the update, so no new entry of the old owner appears
    // behind the flush.
    absl::StatusOr<size_t> flushed = ConntrackMap(*this).DeleteInterfaceFlows(ifindex);
    if (!flushed.ok()) return flushed.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<uint32_t>> BpfObjects::EndpointForIfindex(uint32_t ifindex) const {
  ebpfcni_endpoint_info info{};
  if (bpf_map_lookup_elem(ifindex_map_fd(), &ifindex, &info) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return BpfErrno(absl::StrCat("reading ifindex ", ifindex), errno);
  }
  return info.endpoint_id;
}

absl::StatusOr<std::optional<EndpointMapEntry>> BpfObjects::EndpointEntry(
    uint32_t ifindex) const {
  ebpfcni_endpoint_info info{};
  if (bpf_map_lookup_elem(ifindex_map_fd(), &ifindex, &info) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return BpfErrno(absl::StrCat("reading ifindex ", ifindex), errno);
  }
  return EndpointMapEntry{info.endpoint_id, info.identity};
}

absl::Status BpfObjects::RemoveIfindex(uint32_t ifindex, uint32_t endpoint_id) {
  absl::StatusOr<std::optional<uint32_t>> current = EndpointForIfindex(ifindex);
  if (!current.ok()) return current.status();
  if (!current->has_value() || **current != endpoint_id) return absl::OkStatus();
  // The programs' copy first: once it is gone no packet finds the endpoint,
  // whatever happens to the hash delete.
  if (absl::Status status = MirrorToEndpointArray(ifindex, ebpfcni_endpoint_info{});
      !status.ok()) {
    return status;
  }
  if (bpf_map_delete_elem(ifindex_map_fd(), &ifindex) != 0 && errno != ENOENT) {
    return BpfErrno(absl::StrCat("deleting ifindex ", ifindex), errno);
  }
  absl::StatusOr<size_t> flushed = ConntrackMap(*this).DeleteInterfaceFlows(ifindex);
  if (!flushed.ok()) return flushed.status();
  if (*flushed > 0) {
    spdlog::info("ifindex {}: flushed {} conntrack entries of endpoint {}", ifindex, *flushed,
                 endpoint_id);
  }
  return absl::OkStatus();
}

absl::Status BpfObjects::MirrorToEndpointArray(uint32_t ifindex,
                                               const ebpfcni_endpoint_info& info) {
  if (ifindex >= EBPFCNI_ENDPOINT_ARRAY_ENTRIES) return absl::OkStatus();  // the hash serves it
  if (bpf_map_update_elem(endpoint_array_fd(), &ifindex, &info, BPF_ANY) != 0) {
    return BpfErrno(absl::StrCat("writing slot ", ifindex, " of the endpoint array"), errno);
  }
  return absl::OkStatus();
}

absl::Status BpfObjects::SyncEndpointArray() {
  // What the array must hold: the hash's entries below its bound.
  std::vector<ebpfcni_endpoint_info> wanted(EBPFCNI_ENDPOINT_ARRAY_ENTRIES);
  absl::Status status = ForEachMapKey<uint32_t>(
      ifindex_map_fd(), EBPFCNI_MAX_ENDPOINTS, "the ifindex map",
      [&](uint32_t ifindex) -> absl::Status {
        if (ifindex >= EBPFCNI_ENDPOINT_ARRAY_ENTRIES) return absl::OkStatus();
        if (bpf_map_lookup_elem(ifindex_map_fd(), &ifindex, &wanted[ifindex]) != 0 &&
            errno != ENOENT) {
          return BpfErrno(absl::StrCat("reading ifindex ", ifindex), errno);
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  // The array is mmapable: read it in place, then write each slot that
  // differs (after a plain restart, none).
  constexpr size_t kArrayBytes = sizeof(ebpfcni_endpoint_info) * EBPFCNI_ENDPOINT_ARRAY_ENTRIES;
  void* mapped = mmap(nullptr, kArrayBytes, PROT_READ, MAP_SHARED, endpoint_array_fd(), 0);
  if (mapped == MAP_FAILED) return BpfErrno("mapping the endpoint array", errno);
  const auto* current = static_cast<const ebpfcni_endpoint_info*>(mapped);
  size_t written = 0;
  absl::Status write;
  for (uint32_t ifindex = 0; ifindex < EBPFCNI_ENDPOINT_ARRAY_ENTRIES && write.ok(); ++ifindex) {
    if (std::memcmp(&current[ifindex], &wanted[ifindex], sizeof(ebpfcni_endpoint_info)) == 0) {
      continue;
    }
    write = MirrorToEndpointArray(ifindex, wanted[ifindex]);
    ++written;
  }
  munmap(mapped, kArrayBytes);
  if (!write.ok()) return write;
  if (written > 0) {
    spdlog::info("endpoint array: {} slots brought in line with the ifindex map", written);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<uint32_t, uint32_t>>> BpfObjects::IfindexEntries() const {
  std::vector<std::pair<uint32_t, uint32_t>> entries;
  absl::Status status = ForEachMapKey<uint32_t>(
      ifindex_map_fd(), EBPFCNI_MAX_ENDPOINTS, "the ifindex map",
      [&](uint32_t ifindex) -> absl::Status {
        ebpfcni_endpoint_info info{};
        if (bpf_map_lookup_elem(ifindex_map_fd(), &ifindex, &info) == 0) {
          entries.emplace_back(ifindex, info.endpoint_id);
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return entries;
}

absl::StatusOr<EndpointCounters> BpfObjects::ReadCounters(uint32_t endpoint_id) const {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return BpfErrno("counting possible CPUs", -cpus);
  // A per-CPU lookup returns one value per possible CPU; the struct is a
  // multiple of 8 bytes, so no per-slot padding is needed.
  static_assert(sizeof(ebpfcni_endpoint_counters) % 8 == 0);
  std::vector<ebpfcni_endpoint_counters> per_cpu(cpus);
  EndpointCounters sum;
  if (endpoint_id > EBPFCNI_MAX_ENDPOINT_ID) return sum;  // no slot, never counted
  if (bpf_map_lookup_elem(counters_map_fd(), &endpoint_id, per_cpu.data()) != 0) {
    return BpfErrno(absl::StrCat("reading counters of endpoint ", endpoint_id), errno);
  }
  for (const ebpfcni_endpoint_counters& c : per_cpu) {
    sum.from_pod_packets += c.from_pod_packets;
    sum.from_pod_bytes += c.from_pod_bytes;
    sum.to_pod_packets += c.to_pod_packets;
    sum.to_pod_bytes += c.to_pod_bytes;
  }
  return sum;
}

absl::Status BpfObjects::DeleteCounters(uint32_t endpoint_id) {
  if (endpoint_id > EBPFCNI_MAX_ENDPOINT_ID) return absl::OkStatus();
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return BpfErrno("counting possible CPUs", -cpus);
  std::vector<ebpfcni_endpoint_counters> zeros(cpus);
  if (bpf_map_update_elem(counters_map_fd(), &endpoint_id, zeros.data(), BPF_ANY) != 0) {
    return BpfErrno(absl::StrCat("zeroing counters of endpoint ", endpoint_id), errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> BpfObjects::CountedEndpointIds() const {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return BpfErrno("counting possible CPUs", -cpus);
  // The whole array in a few batch reads rather than 65536 lookups.
  constexpr uint32_t kBatch = 4096;
  std::vector<uint32_t> keys(kBatch);
  std::vector<ebpfcni_endpoint_counters> values(static_cast<size_t>(kBatch) * cpus);
  std::vector<uint32_t> ids;
  uint32_t in_batch = 0, out_batch = 0;
  bool first = true;
  for (uint32_t round = 0; round <= (EBPFCNI_MAX_ENDPOINT_ID + 1) / kBatch; ++round) {
    uint32_t count = kBatch;
    int rc = bpf_map_lookup_batch(counters_map_fd(), first ? nullptr : &in_batch, &out_batch,
                                  keys.data(), values.data(), &count, nullptr);
    int err = rc != 0 ? errno : 0;
    for (uint32_t i = 0; i < count && i < kBatch; ++i) {
      for (int cpu = 0; cpu < cpus; ++cpu) {
        const ebpfcni_endpoint_counters& c = values[static_cast<size_t>(i) * cpus + cpu];
        if (c.from_pod_packets || c.from_pod_bytes || c.to_pod_packets || c.to_pod_bytes) {
          ids.push_back(keys[i]);
          break;
        }
      }
    }
    if (rc != 0) {
      if (err == ENOENT) break;  // past the last slot
      return BpfErrno("reading the counters map", err);
    }
    in_batch = out_batch;
    first = false;
  }
  return ids;
}

}  // namespace ebpfcni::datapath
