#include "services/policy/clusterstate/manifest_directory_source.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "services/policy/clusterstate/manifest_parser.h"

namespace ebpfcni::policy {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ObjectKey = std::tuple<ResourceKind, std::string, std::string>;  // kind, namespace, name

// What inotify must report: a file written and closed, a file renamed into
// or out of the directory (editors and ConfigMap volumes write a temporary
// file then rename), a file deleted, a symlink created, and the directory
// itself going away.
constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                                IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
// However busy the directory is, changes are applied at least this often.
constexpr auto kMaxDebounceDelay = std::chrono::milliseconds(500);
// How often to look for the directory again after it disappeared.
constexpr auto kDirectoryRetry = std::chrono::milliseconds(1000);

bool IsManifestName(const std::string& name) {
  // Hidden files are editors' temporaries and lock files (".#a.yaml",
  // ".a.yaml.swp") and ConfigMap volume internals ("..data").
  if (name.empty() || name[0] == '.') return false;
  return name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json");
}

std::string KeyText(const ObjectKey& key) {
  const auto& [kind, ns, name] = key;
  return absl::StrCat(ResourceKindName(kind), " ", ns.empty() ? "" : ns + "/", name);
}

// The last good content of one file, and what is wrong with it now.
struct FileState {
  std::vector<ManifestObject> objects;
  std::optional<std::string> error;  // "path:line: message"
  std::vector<std::string> warnings;
};

// Changes seen but not applied yet (debounced).
struct PendingChanges {
  std::set<std::string> files;  // manifest files to reload
  bool rescan = false;          // or everything (overflow, ConfigMap swap, directory back)
  bool any = false;
  // Every change so far was a file renamed into place (IN_MOVED_TO): such a
  // file is complete by construction (write aside, then rename(2) — what
  // kubectl-style tools, editors with safe writes and our tests do), so
  // there is nothing to wait for. The debounce exists for files written in
  // place, which are read only once the writes have settled.
  bool only_renames_in = true;
  Clock::time_point first, last;

  void Note(Clock::time_point now, bool renamed_in) {
    if (!any) first = now;
    last = now;
    any = true;
    only_renames_in = only_renames_in && renamed_in && !rescan;
  }
  // Now for complete files; else quiet for `debounce`, or waiting since
  // kMaxDebounceDelay.
  Clock::time_point Due(std::chrono::milliseconds debounce) const {
    if (only_renames_in) return last;
    return std::min(last + debounce, first + kMaxDebounceDelay);
  }
};

// Who provides an object to the listener, and what was delivered.
struct DeliveredObject {
  std::string file;
  int line = 0;
  nlohmann::json object;
};

class ManifestDirectorySource final : public ClusterStateSource {
 public:
  ManifestDirectorySource(std::string directory, ManifestDirectoryOptions options)
      : directory_(std::move(directory)), options_(options) {}
  ~ManifestDirectorySource() override {
    Stop();
    if (inotify_fd_ >= 0) close(inotify_fd_);
    if (stop_fd_ >= 0) close(stop_fd_);
  }

  absl::Status Start(ClusterStateListener* listener) override {
    if (listener == nullptr) return absl::InvalidArgumentError("ManifestDirectorySource::Start: null listener");
    if (started_.exchange(true)) return absl::FailedPreconditionError("ManifestDirectorySource already started");
    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd_ < 0) return absl::InternalError(absl::StrCat("inotify_init1: ", std::strerror(errno)));
    stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (stop_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
    // Watch before the first scan: a change made during the scan is then
    // seen again rather than lost.
    if (!AddWatch()) {
      return absl::NotFoundError(absl::StrCat("cannot watch manifest directory ", directory_, ": ",
                                              std::strerror(errno)));
    }
    listener_ = listener;
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  void Stop() override {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (!thread_.joinable()) return;
    uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof(one)) < 0) spdlog::warn("manifests: eventfd write: {}", std::strerror(errno));
    thread_.join();
  }

  ClusterStateStatus Status() const override {
    std::lock_guard<std::mutex> lock(mu_);
    ClusterStateStatus status;
    status.description = absl::StrCat("manifests ", directory_);
    status.synced = synced_;
    if (directory_error_) status.errors.push_back(*directory_error_);
    for (const auto& [file, state] : files_) {
      if (state.error) status.errors.push_back(*state.error);
      for (const std::string& warning : state.warnings) status.warnings.push_back(warning);
      for (const ManifestObject& object : state.objects) {
        ObjectKey key{object.kind, object.namespace_name, object.name};
        auto owner = delivered_.find(key);
        if (owner != delivered_.end() && owner->second.file != file) {
          status.errors.push_back(absl::StrCat(Path(file), ":", object.line, ": ", KeyText(key),
                                               " is already defined in ", Path(owner->second.file), ":",
                                               owner->second.line, "; this copy is ignored"));
        }
      }
    }
    for (const auto& [key, delivered] : delivered_) {
      switch (std::get<0>(key)) {
        case ResourceKind::kPod:
          ++status.pods;
          break;
        case ResourceKind::kNamespace:
          ++status.namespaces;
          break;
        case ResourceKind::kNetworkPolicy:
          ++status.network_policies;
          break;
      }
    }
    return status;
  }

 private:
  std::string Path(const std::string& file) const { return (fs::path(directory_) / file).string(); }

  bool AddWatch() {
    watch_descriptor_ = inotify_add_watch(inotify_fd_, directory_.c_str(), kWatchMask);
    return watch_descriptor_ >= 0;
  }

  void Run() {
    RescanAll();
    {
      std::lock_guard<std::mutex> lock(mu_);
      synced_ = true;
    }
    listener_->OnSynced();

    PendingChanges pending;
    alignas(inotify_event) char buffer[16 * 1024];
    while (true) {
      int timeout_ms = -1;
      if (pending.any) {
        timeout_ms = std::max<int>(
            0, std::chrono::ceil<std::chrono::milliseconds>(pending.Due(options_.debounce) - Clock::now()).count());
      } else if (watch_descriptor_ < 0) {
        timeout_ms = kDirectoryRetry.count();
      }
      pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
      int ready = poll(fds, 2, timeout_ms);
      if (ready < 0 && errno != EINTR) {
        spdlog::error("manifests {}: poll: {}", directory_, std::strerror(errno));
        return;
      }
      if (fds[0].revents & POLLIN) return;
      if (ready > 0 && (fds[1].revents & POLLIN)) {
        while (true) {
          ssize_t n = read(inotify_fd_, buffer, sizeof(buffer));
          if (n <= 0) break;
          for (char* p = buffer; p < buffer + n;) {
            auto* event = reinterpret_cast<inotify_event*>(p);
            p += sizeof(inotify_event) + event->len;
            std::string name = event->len > 0 ? std::string(event->name) : std::string();
            if (event->mask & IN_Q_OVERFLOW) {
              pending.rescan = true;
            } else if (event->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
              if (event->wd == watch_descriptor_) {
                if (!(event->mask & IN_IGNORED)) inotify_rm_watch(inotify_fd_, watch_descriptor_);
                watch_descriptor_ = -1;
                SetDirectoryError(absl::StrCat(directory_, ": manifest directory was removed or renamed; "
                                                           "its objects are kept until it comes back"));
                spdlog::error("manifests {}: directory removed or renamed", directory_);
              }
              continue;
            } else if (IsManifestName(name)) {
              pending.files.insert(name);
            } else if (name.starts_with("..")) {
              pending.rescan = true;  // a ConfigMap volume swapped its ..data symlink: every file may have changed
            } else {
              continue;
            }
            pending.Note(Clock::now(), (event->mask & IN_MOVED_TO) != 0);
          }
        }
        continue;  // re-arm the debounce timer
      }
      if (watch_descriptor_ < 0 && !pending.any) {
        if (AddWatch()) {
          spdlog::info("manifests {}: directory is back; rescanning", directory_);
          SetDirectoryError(std::nullopt);
          pending.rescan = true;
          pending.Note(Clock::now(), /*renamed_in=*/false);
        }
        continue;
      }
      if (pending.any) {
        if (Clock::now() < pending.Due(options_.debounce)) continue;
        if (watch_descriptor_ < 0) {
          // The directory went away (rm -rf deletes its files first): those
          // deletions are part of the removal, and its objects are kept
          // until it comes back, when a rescan settles every file.
          pending = PendingChanges();
          continue;
        }
        if (pending.rescan) {
          RescanAll();
        } else {
          for (const std::string& name : pending.files) ReloadFile(name);
        }
        pending = PendingChanges();
      }
    }
  }

  void SetDirectoryError(std::optional<std::string> error) {
    std::lock_guard<std::mutex> lock(mu_);
    directory_error_ = std::move(error);
  }

  // Every manifest file now in the directory, plus those we knew that are gone.
  void RescanAll() {
    std::set<std::string> names;
    std::error_code ec;
    for (const fs::directory_entry& entry : fs::directory_iterator(directory_, ec)) {
      std::string name = entry.path().filename().string();
      if (IsManifestName(name)) names.insert(name);
    }
    if (ec) {
      spdlog::error("manifests {}: cannot list: {}", directory_, ec.message());
      SetDirectoryError(absl::StrCat(directory_, ": cannot list the manifest directory: ", ec.message()));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [file, state] : files_) names.insert(file);
    }
    for (const std::string& name : names) ReloadFile(name);
  }

  // Reads one file again and delivers what changed as one batch.
  void ReloadFile(const std::string& name) {
    const std::string path = Path(name);
    std::optional<std::string> text;
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) {
      std::ifstream in(path, std::ios::binary);
      std::stringstream content;
      content << in.rdbuf();
      if (in.good() || in.eof()) text = content.str();
    }
    std::vector<ResourceEvent> batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!text) {
        files_.erase(name);  // gone (or no longer a file): its objects go with it
      } else {
        ManifestParseResult parsed = ParseManifest(*text, name.ends_with(".json"));
        FileState& state = files_[name];
        state.warnings.clear();
        for (const auto& [line, warning] : parsed.warnings) {
          state.warnings.push_back(absl::StrCat(path, ":", line, ": ", warning));
          spdlog::warn("manifests: {}:{}: {}", path, line, warning);
        }
        if (!parsed.ok) {
          // Keep the last good objects: a half-saved file must not drop policies.
          state.error = absl::StrCat(path, ":", parsed.error_line, ": ", parsed.error);
          spdlog::error("manifests: {} (keeping its previous {} objects)", *state.error, state.objects.size());
          return;
        }
        state.error.reset();
        state.objects = std::move(parsed.objects);
      }
      batch = Reconcile();
    }
    if (!batch.empty()) listener_->OnBatch(batch);
  }

  // Desired owner of every object: the file that already provides it if it
  // still does, else the first file (by name) defining it. Returns the
  // difference with what the listener has, and records it as delivered.
  std::vector<ResourceEvent> Reconcile() {
    std::map<ObjectKey, const ManifestObject*> desired;
    std::map<ObjectKey, std::string> desired_file;
    for (const auto& [file, state] : files_) {
      for (const ManifestObject& object : state.objects) {
        ObjectKey key{object.kind, object.namespace_name, object.name};
        auto current = delivered_.find(key);
        bool current_owner = current != delivered_.end() && current->second.file == file;
        auto [it, inserted] = desired.emplace(key, &object);
        if (inserted) {
          desired_file[key] = file;
        } else if (current_owner) {
          it->second = &object;
          desired_file[key] = file;
        }
      }
    }
    std::vector<ResourceEvent> batch;
    for (auto it = delivered_.begin(); it != delivered_.end();) {
      if (desired.contains(it->first)) {
        ++it;
        continue;
      }
      const auto& [kind, ns, name] = it->first;
      batch.push_back(ResourceEvent{ResourceEvent::Type::kDelete, kind, ns, name, it->second.object,
                                    absl::StrCat(Path(it->second.file), ":", it->second.line)});
      it = delivered_.erase(it);
    }
    for (const auto& [key, object] : desired) {
      const std::string& file = desired_file[key];
      DeliveredObject& delivered = delivered_[key];
      bool changed = delivered.object != object->object;
      delivered.file = file;
      delivered.line = object->line;
      if (!changed) continue;
      delivered.object = object->object;
      const auto& [kind, ns, name] = key;
      batch.push_back(ResourceEvent{ResourceEvent::Type::kUpsert, kind, ns, name, object->object,
                                    absl::StrCat(Path(file), ":", object->line)});
    }
    return batch;
  }

  const std::string directory_;
  const ManifestDirectoryOptions options_;
  std::atomic<bool> started_{false};
  ClusterStateListener* listener_ = nullptr;
  int inotify_fd_ = -1;
  int stop_fd_ = -1;
  int watch_descriptor_ = -1;  // -1 while the directory is gone
  std::mutex stop_mu_;
  std::thread thread_;

  mutable std::mutex mu_;  // guards what Status() reads
  bool synced_ = false;
  std::optional<std::string> directory_error_;
  std::map<std::string, FileState> files_;  // by file name, sorted: "first file" = first by name
  std::map<ObjectKey, DeliveredObject> delivered_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterStateSource>> NewManifestDirectorySource(const std::string& directory) {
  return NewManifestDirectorySource(directory, ManifestDirectoryOptions{});
}

absl::StatusOr<std::unique_ptr<ClusterStateSource>> NewManifestDirectorySource(const std::string& directory,
                                                                               ManifestDirectoryOptions options) {
  if (directory.empty()) return absl::InvalidArgumentError("manifest directory: empty path");
  std::error_code ec;
  fs::file_status status = fs::status(directory, ec);
  if (!fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat("manifest directory ", directory,
                                            " does not exist; create it (it may be empty) or fix the path"));
  }
  if (!fs::is_directory(status)) {
    return absl::InvalidArgumentError(absl::StrCat("manifest directory ", directory, " is not a directory"));
  }
  fs::path normal = fs::absolute(directory).lexically_normal();
  if (normal.filename().empty() && normal.has_parent_path() && normal != normal.root_path()) {
    normal = normal.parent_path();  // "dir/" -> "dir", so paths in messages read "dir/a.yaml"
  }
  return std::unique_ptr<ClusterStateSource>(new ManifestDirectorySource(normal.string(), options));
}

}  // namespace ebpfcni::policy
