#include "services/datapath/tc_attacher.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <spdlog/spdlog.h>

#include "services/datapath/bpf_map_util.h"
#include "services/datapath/tcx_link.h"

namespace ebpfcni::datapath {
namespace {

constexpr TcDirection kBothDirections[] = {TcDirection::kIngress, TcDirection::kEgress};

// Classic clsact filters with our fixed handle and priority.
class ClsactAttacher : public TcAttacher {
 public:
  TcAttachMode mode() const override { return TcAttachMode::kClsact; }

  absl::StatusOr<uint32_t> Attach(int ifindex, TcDirection direction, int prog_fd) override {
    if (absl::Status status = EnsureClsactQdisc(ifindex); !status.ok()) return status;
    absl::StatusOr<uint32_t> id = AttachTcProgram(ifindex, direction, prog_fd);
    if (!id.ok()) return id.status();
    // A TCX link of ours from a run in TCX mode would run the programs a
    // second time; it goes once the filter is in place.
    RemoveTcxLinkOfEarlierRun(ifindex, direction);
    return id;
  }

  absl::StatusOr<uint32_t> Query(int ifindex, TcDirection direction) override {
    return QueryTcProgram(ifindex, direction);
  }

  absl::Status Detach(int ifindex, TcDirection direction, bool interface_is_ours) override {
    // A reused ifindex: the filters there are the new interface's.
    if (!interface_is_ours) return absl::OkStatus();
    return DetachTcProgram(ifindex, direction);
  }

  absl::Status RemoveAllExcept(const std::set<int>&) override {
    // Filters go with their interface; a live interface that is no
    // endpoint's cannot be told apart from one whose filter someone else
    // set with our handle, so nothing is swept here.
    return absl::OkStatus();
  }

  explicit ClsactAttacher(std::string links_dir) : links_dir_(std::move(links_dir)) {}

 private:
  void RemoveTcxLinkOfEarlierRun(int ifindex, TcDirection direction) {
    if (links_dir_.empty()) return;
    std::string pin = absl::StrCat(links_dir_, "/", ifindex, "-", TcDirectionName(direction));
    int fd = bpf_obj_get(pin.c_str());
    if (fd < 0) return;
    ScopedFd link(fd);
    absl::StatusOr<TcxLinkInfo> info = GetTcxLinkInfo(link.get());
    if (info.ok() && info->ifindex == static_cast<uint32_t>(ifindex)) bpf_link_detach(link.get());
    unlink(pin.c_str());
    spdlog::info("removed the TCX {} link of an earlier run from ifindex {}",
                 TcDirectionName(direction), ifindex);
  }

  std::string links_dir_;
};

// TCX links, pinned as <links_dir>/<ifindex>-<ingress|egress>. The pin is
// what makes a link ours: QueryTcxPrograms would also list other tools'
// programs.
class TcxAttacher : public TcAttacher {
 public:
  explicit TcxAttacher(std::string links_dir) : links_dir_(std::move(links_dir)) {}

  TcAttachMode mode() const override { return TcAttachMode::kTcx; }

  absl::StatusOr<uint32_t> Attach(int ifindex, TcDirection direction, int prog_fd) override {
    const std::string pin = PinPath(ifindex, direction);
    std::optional<PinnedLink> pinned = OpenPinned(pin);
    if (pinned.has_value() && pinned->info.ifindex == static_cast<uint32_t>(ifindex)) {
      // Our link is on this interface: swap the program in one step, so no
      // packet is judged by neither or both programs.
      if (int err = bpf_link_update(pinned->fd->get(), prog_fd, nullptr); err != 0) {
        return BpfErrno(absl::StrCat("replacing the program of TCX ", TcDirectionName(direction),
                                     " link ", pinned->info.link_id, " on ifindex ", ifindex),
                        -err);
      }
    } else {
      // None, or a defunct link left by a deleted interface whose ifindex
      // the kernel handed to this one.
      if (pinned.has_value()) unlink(pin.c_str());
      absl::StatusOr<int> fd = CreateTcxLink(prog_fd, ifindex, direction);
      if (!fd.ok()) return fd.status();
      ScopedFd link(*fd);
      if (bpf_obj_pin(link.get(), pin.c_str()) != 0) {
        int err = errno;
        bpf_link_detach(link.get());
        return BpfErrno(absl::StrCat("pinning TCX link at ", pin), err);
      }
    }
    // A clsact filter of ours from an earlier run (clsact mode, or a
    // version before TCX) would judge every packet a second time and keep
    // the clsact qdisc that blocks a chained plugin's `ingress` qdisc.
    if (absl::Status status = DetachTcProgram(ifindex, direction); !status.ok()) {
      spdlog::warn("removing the clsact {} filter of an earlier run from ifindex {}: {}",
                   TcDirectionName(direction), ifindex, status.ToString());
    }
    return ProgramIdOf(prog_fd);
  }

  absl::StatusOr<uint32_t> Query(int ifindex, TcDirection direction) override {
    std::optional<PinnedLink> pinned = OpenPinned(PinPath(ifindex, direction));
    if (!pinned.has_value() || pinned->info.ifindex != static_cast<uint32_t>(ifindex)) return 0u;
    return pinned->info.prog_id;
  }

  absl::Status Detach(int ifindex, TcDirection direction, bool interface_is_ours) override {
    const std::string pin = PinPath(ifindex, direction);
    std::optional<PinnedLink> pinned = OpenPinned(pin);
    if (pinned.has_value()) {
      const bool live = pinned->info.ifindex == static_cast<uint32_t>(ifindex);
      // A live link on a reused ifindex belongs to the interface there now.
      if (live && !interface_is_ours) return absl::OkStatus();
      if (live && bpf_link_detach(pinned->fd->get()) != 0 && errno != ENOLINK) {
        return BpfErrno(absl::StrCat("detaching TCX link ", pinned->info.link_id), errno);
      }
      if (unlink(pin.c_str()) != 0 && errno != ENOENT) {
        return BpfErrno(absl::StrCat("removing pin ", pin), errno);
      }
    }
    // An interface adopted from a clsact-mode run that never got a link.
    if (interface_is_ours) return DetachTcProgram(ifindex, direction);
    return absl::OkStatus();
  }

  absl::Status RemoveAllExcept(const std::set<int>& ifindexes) override {
    DIR* dir = opendir(links_dir_.c_str());
    if (dir == nullptr) return absl::OkStatus();
    std::vector<std::string> names;
    while (dirent* entry = readdir(dir)) names.emplace_back(entry->d_name);
    closedir(dir);
    for (const std::string& name : names) {
      std::vector<std::string> parts = absl::StrSplit(name, '-');
      int ifindex = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &ifindex)) continue;
      if (ifindexes.contains(ifindex)) continue;
      for (TcDirection direction : kBothDirections) {
        if (parts[1] != TcDirectionName(direction)) continue;
        spdlog::info("removing TCX {} link of ifindex {}: no endpoint has that interface",
                     TcDirectionName(direction), ifindex);
        if (absl::Status status = Detach(ifindex, direction, /*interface_is_ours=*/true);
            !status.ok()) {
          return status;
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  struct PinnedLink {
    std::shared_ptr<ScopedFd> fd;
    TcxLinkInfo info;
  };

  std::string PinPath(int ifindex, TcDirection direction) const {
    return absl::StrCat(links_dir_, "/", ifindex, "-", TcDirectionName(direction));
  }

  // nullopt when nothing (or something that is not a TCX link) is pinned.
  static std::optional<PinnedLink> OpenPinned(const std::string& pin) {
    int fd = bpf_obj_get(pin.c_str());
    if (fd < 0) return std::nullopt;
    auto owned = std::make_shared<ScopedFd>(fd);
    absl::StatusOr<TcxLinkInfo> info = GetTcxLinkInfo(fd);
    if (!info.ok()) {
      spdlog::warn("ignoring {}: {}", pin, info.status().ToString());
      return std::nullopt;
    }
    return PinnedLink{std::move(owned), *info};
  }

  static absl::StatusOr<uint32_t> ProgramIdOf(int prog_fd) {
    bpf_prog_info info{};
    uint32_t length = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &length) != 0) {
      return BpfErrno("reading program info", errno);
    }
    return info.id;
  }

  std::string links_dir_;
};

}  // namespace

absl::StatusOr<TcAttachMode> ParseTcAttachMode(const std::string& text) {
  if (text == "auto") return TcAttachMode::kAuto;
  if (text == "tcx") return TcAttachMode::kTcx;
  if (text == "clsact") return TcAttachMode::kClsact;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown TC attach mode \"", text, "\": use auto, tcx or clsact"));
}

const char* TcAttachModeName(TcAttachMode mode) {
  switch (mode) {
    case TcAttachMode::kAuto:
      return "auto";
    case TcAttachMode::kTcx:
      return "tcx";
    case TcAttachMode::kClsact:
      return "clsact";
  }
  return "?";
}

absl::StatusOr<std::vector<uint32_t>> ProgramsOnHook(int ifindex, TcDirection direction) {
  std::vector<uint32_t> programs;
  if (KernelSupportsTcx()) {
    absl::StatusOr<std::vector<uint32_t>> tcx = QueryTcxPrograms(ifindex, direction);
    if (!tcx.ok()) return tcx.status();
    programs = *std::move(tcx);
  }
  absl::StatusOr<uint32_t> filter = QueryTcProgram(ifindex, direction);
  if (!filter.ok()) return filter.status();
  if (*filter != 0) programs.push_back(*filter);
  return programs;
}

bool KernelSupportsTcx() {
  return QueryTcxPrograms(/*ifindex=*/1, TcDirection::kIngress).ok();
}

absl::StatusOr<std::unique_ptr<TcAttacher>> MakeTcAttacher(TcAttachMode mode,
                                                          const std::string& bpf_dir) {
  std::string links_dir = bpf_dir.empty() ? "" : absl::StrCat(bpf_dir, "/links");
  if (!links_dir.empty() && mkdir(links_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return BpfErrno(absl::StrCat("creating ", links_dir), errno);
  }
  if (mode == TcAttachMode::kAuto) {
    mode = !links_dir.empty() && KernelSupportsTcx() ? TcAttachMode::kTcx : TcAttachMode::kClsact;
  }
  if (mode == TcAttachMode::kClsact) return std::make_unique<ClsactAttacher>(links_dir);
  if (links_dir.empty()) {
    return absl::InvalidArgumentError("TCX attachment needs a BPF pin directory for its links");
  }
  if (!KernelSupportsTcx()) {
    return absl::FailedPreconditionError(
        "this kernel does not support TCX (Linux 6.6 or newer); use --tc_attach=clsact");
  }
  return std::make_unique<TcxAttacher>(std::move(links_dir));
}

}  // namespace ebpfcni::datapath
