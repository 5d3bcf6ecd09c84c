#include "services/datapath/bpf_objects.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
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

}  // namespace

absl::StatusOr<std::unique_ptr<BpfObjects>> BpfObjects::Load(const std::string& pin_dir) {
  BpfLoadOptions options;
  options.pin_dir = pin_dir;
  return Load(options);
}

absl::StatusOr<std::unique_ptr<BpfObjects>> BpfObjects::Load(const BpfLoadOptions& options) {
  const std::string& pin_dir = options.pin_dir;
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
  objects->program_ids_.from_container = ProgramId(skeleton->progs.from_container);
  objects->program_ids_.to_container = ProgramId(skeleton->progs.to_container);

  if (!pin_dir.empty()) {
    if (absl::Status status = objects->PinPrograms(progs_dir); !status.ok()) return status;
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
int BpfObjects::counters_map_fd() const { return bpf_map__fd(skeleton_->maps.endpoint_stats); }
int BpfObjects::policy_maps_fd() const { return bpf_map__fd(skeleton_->maps.policy_maps); }
int BpfObjects::policy_stats_fd() const { return bpf_map__fd(skeleton_->maps.policy_stats); }
int BpfObjects::ipcache_fd() const { return bpf_map__fd(skeleton_->maps.ipcache); }
int BpfObjects::conntrack_fd() const { return bpf_map__fd(skeleton_->maps.conntrack); }
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
  ebpfcni_endpoint_info info{};
  info.endpoint_id = endpoint_id;
  info.identity = identity;
  if (bpf_map_update_elem(ifindex_map_fd(), &ifindex, &info, BPF_ANY) != 0) {
    return BpfErrno(absl::StrCat("writing ifindex ", ifindex, " -> endpoint ", endpoint_id), errno);
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
  if (bpf_map_delete_elem(ifindex_map_fd(), &ifindex) != 0 && errno != ENOENT) {
    return BpfErrno(absl::StrCat("deleting ifindex ", ifindex), errno);
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
  if (bpf_map_lookup_elem(counters_map_fd(), &endpoint_id, per_cpu.data()) != 0) {
    if (errno == ENOENT) return sum;
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
  if (bpf_map_delete_elem(counters_map_fd(), &endpoint_id) != 0 && errno != ENOENT) {
    return BpfErrno(absl::StrCat("deleting counters of endpoint ", endpoint_id), errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> BpfObjects::CountedEndpointIds() const {
  std::vector<uint32_t> ids;
  absl::Status status = ForEachMapKey<uint32_t>(counters_map_fd(), EBPFCNI_MAX_ENDPOINTS,
                                                "the counters map", [&](uint32_t id) {
                                                  ids.push_back(id);
                                                  return absl::OkStatus();
                                                });
  if (!status.ok()) return status;
  return ids;
}

}  // namespace ebpfcni::datapath
