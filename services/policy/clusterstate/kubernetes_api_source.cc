#include "services/policy/clusterstate/kubernetes_api_source.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <tuple>
#include <variant>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "services/policy/clusterstate/kubernetes_http_client.h"

namespace ebpfcni::policy {
namespace {

using Clock = std::chrono::steady_clock;

struct ResourceType {
  ResourceKind kind;
  const char* resource;  // "pods": how errors name it
  const char* path;      // the collection, all namespaces
  const char* kind_name;
  const char* api_version;
};
// Namespaces first: a listener applying the first lists sees a pod's
// namespace before the pod (not required, but it saves it work).
constexpr ResourceType kResourceTypes[] = {
    {ResourceKind::kNamespace, "namespaces", "/api/v1/namespaces", "Namespace", "v1"},
    {ResourceKind::kPod, "pods", "/api/v1/pods", "Pod", "v1"},
    {ResourceKind::kNetworkPolicy, "networkpolicies", "/apis/networking.k8s.io/v1/networkpolicies", "NetworkPolicy",
     "networking.k8s.io/v1"},
};
constexpr char kOrigin[] = "kubernetes";
// A list is at most this many pages (a runaway continue loop is a server bug).
constexpr int kMaxListPages = 100000;
// A watch that ends sooner than this with no event is treated as a failure
// (backed off), so a server that closes watches at once is not hammered.
constexpr auto kShortWatch = std::chrono::seconds(1);

std::string QueryEscape(const std::string& value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string MetadataString(const nlohmann::json& object, const char* field) {
  auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return "";
  auto value = metadata->find(field);
  return value != metadata->end() && value->is_string() ? value->get<std::string>() : "";
}

// An HTTP error answer as a Status a person can act on. The body is
// usually a Kubernetes Status object whose message says what went wrong.
absl::Status HttpError(const std::string& what, const HttpResponse& response, const KubernetesApiConfig& config) {
  std::string message;
  nlohmann::json body = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_object() && body.contains("message") && body["message"].is_string()) {
    message = body["message"].get<std::string>();
  } else {
    message = response.body.substr(0, 200);
  }
  std::string text = absl::StrCat(what, ": HTTP ", response.status, " (", message, ")");
  switch (response.status) {
    case 401:
      return absl::UnauthenticatedError(absl::StrCat(
          text, ": the API server rejected the credentials; check ",
          config.token_file.empty() ? std::string("the token / client certificate")
                                    : absl::StrCat("the token in ", config.token_file),
          " (expired or rotated?)"));
    case 403:
      return absl::PermissionDeniedError(absl::StrCat(
          text, ": the account may not list/watch it; grant get/list/watch on pods, namespaces and "
                "networking.k8s.io networkpolicies (RBAC)"));
    case 404:
      return absl::NotFoundError(absl::StrCat(text, ": is the server a Kubernetes API server?"));
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return absl::UnavailableError(text);
    default:
      return absl::UnknownError(text);
  }
}

class KubernetesApiSource;

// Lists then watches one resource type, forever: what client-go calls a
// reflector. It keeps the objects it has delivered so that a relist (after
// 410 Gone) can be delivered as a difference, deletes included.
class ResourceReflector {
 public:
  ResourceReflector(const ResourceType& type, const KubernetesApiConfig& config,
                    const KubernetesApiSourceOptions& options, KubernetesApiSource* owner)
      : type_(type), config_(config), options_(options), client_(config, options), owner_(owner) {}

  void Run();
  void Interrupt() { client_.Interrupt(); }
  uint32_t count() const { return count_.load(); }
  std::optional<std::string> error() const {
    std::lock_guard<std::mutex> lock(error_mu_);
    return error_;
  }

 private:
  using Key = std::pair<std::string, std::string>;  // namespace, name
  enum class WatchEnd { kExpired, kEnded };

  absl::Status List();
  absl::StatusOr<WatchEnd> Watch(int* events);
  void SetError(std::optional<std::string> error) {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (error && error != error_) spdlog::warn("kubernetes: {}", *error);
    error_ = std::move(error);
  }
  Key KeyOf(const nlohmann::json& object) const {
    return {type_.kind == ResourceKind::kNamespace ? "" : MetadataString(object, "namespace"),
            MetadataString(object, "name")};
  }
  ResourceEvent Event(ResourceEvent::Type type, const Key& key, nlohmann::json object) const {
    return ResourceEvent{type, type_.kind, key.first, key.second, std::move(object), kOrigin};
  }

  const ResourceType type_;
  const KubernetesApiConfig config_;
  const KubernetesApiSourceOptions options_;
  KubernetesHttpClient client_;
  KubernetesApiSource* const owner_;

  std::string resource_version_;  // "" = must (re)list
  std::map<Key, nlohmann::json> known_;
  std::atomic<uint32_t> count_{0};
  mutable std::mutex error_mu_;
  std::optional<std::string> error_;
};

class KubernetesApiSource final : public ClusterStateSource {
 public:
  KubernetesApiSource(KubernetesApiConfig config, KubernetesApiSourceOptions options)
      : config_(std::move(config)), options_(options) {
    for (const ResourceType& type : kResourceTypes) {
      reflectors_.push_back(std::make_unique<ResourceReflector>(type, config_, options_, this));
    }
  }
  ~KubernetesApiSource() override { Stop(); }

  absl::Status Start(ClusterStateListener* listener) override {
    if (listener == nullptr) return absl::InvalidArgumentError("KubernetesApiSource::Start: null listener");
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (!threads_.empty() || stopping()) return absl::FailedPreconditionError("KubernetesApiSource already started");
    listener_ = listener;
    dispatcher_ = std::thread([this] { Dispatch(); });
    for (auto& reflector : reflectors_) threads_.emplace_back([r = reflector.get()] { r->Run(); });
    return absl::OkStatus();
  }

  void Stop() override {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    {
      std::lock_guard<std::mutex> queue_lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& reflector : reflectors_) reflector->Interrupt();
    for (std::thread& thread : threads_) thread.join();
    if (dispatcher_.joinable()) dispatcher_.join();
  }

  ClusterStateStatus Status() const override {
    ClusterStateStatus status;
    status.description = absl::StrCat("kubernetes ", config_.server);
    status.synced = synced_.load();
    for (size_t i = 0; i < reflectors_.size(); ++i) {
      if (std::optional<std::string> error = reflectors_[i]->error()) {
        status.errors.push_back(absl::StrCat("kubernetes: ", *error));
      }
      uint32_t count = reflectors_[i]->count();
      switch (kResourceTypes[i].kind) {
        case ResourceKind::kPod:
          status.pods = count;
          break;
        case ResourceKind::kNamespace:
          status.namespaces = count;
          break;
        case ResourceKind::kNetworkPolicy:
          status.network_policies = count;
          break;
      }
    }
    return status;
  }

  // --- for the reflectors ---------------------------------------------------
  void Deliver(std::vector<ResourceEvent> batch) {
    if (batch.empty()) return;
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(batch));
    cv_.notify_all();
  }
  // Each reflector's first complete list; the third one means synced.
  void FirstListDone() {
    std::lock_guard<std::mutex> lock(mu_);
    if (++first_lists_done_ == std::size(kResourceTypes)) queue_.push_back(Synced{});
    cv_.notify_all();
  }
  // Sleeps `attempt`'s backoff with jitter; false when stopping.
  bool Backoff(int attempt) {
    auto base = options_.initial_backoff * (1LL << std::min(attempt, 20));
    auto capped = std::min<std::chrono::milliseconds>(
        std::chrono::duration_cast<std::chrono::milliseconds>(base), options_.max_backoff);
    std::chrono::milliseconds delay;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // "Equal jitter": between half and all of the delay, so nodes that
      // lost the API server together do not come back together.
      std::uniform_int_distribution<int64_t> jitter(capped.count() / 2, capped.count());
      delay = std::chrono::milliseconds(jitter(random_));
    }
    std::unique_lock<std::mutex> lock(mu_);
    return !cv_.wait_for(lock, delay, [this] { return stopping_; });
  }
  bool stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

 private:
  struct Synced {};

  // The one thread that calls the listener: batches of the three reflectors
  // in the order they were produced.
  void Dispatch() {
    while (true) {
      std::variant<std::vector<ResourceEvent>, Synced> item;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      if (auto* batch = std::get_if<std::vector<ResourceEvent>>(&item)) {
        listener_->OnBatch(*batch);
      } else {
        spdlog::info("kubernetes {}: synced", config_.server);
        synced_ = true;
        listener_->OnSynced();
      }
    }
  }

  const KubernetesApiConfig config_;
  const KubernetesApiSourceOptions options_;
  ClusterStateListener* listener_ = nullptr;
  std::mutex lifecycle_mu_;  // Start/Stop
  // Made by the constructor and never changed: Status() reads them unlocked
  // (a listener may call Status() while Stop() waits for it).
  std::vector<std::unique_ptr<ResourceReflector>> reflectors_;
  std::vector<std::thread> threads_;
  std::thread dispatcher_;
  std::atomic<bool> synced_{false};

  mutable std::mutex mu_;  // the queue, stopping_, random_
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::variant<std::vector<ResourceEvent>, Synced>> queue_;
  size_t first_lists_done_ = 0;
  std::mt19937_64 random_{std::random_device{}()};
};

void ResourceReflector::Run() {
  int attempt = 0;
  bool listed_once = false;
  bool watched_since_list = false;
  while (!owner_->stopping()) {
    if (resource_version_.empty()) {
      absl::Status listed = List();
      if (absl::IsCancelled(listed)) return;
      if (!listed.ok()) {
        SetError(std::string(listed.message()));
        if (!owner_->Backoff(attempt++)) return;
        continue;
      }
      SetError(std::nullopt);
      watched_since_list = false;
      if (!listed_once) {
        listed_once = true;
        owner_->FirstListDone();
      }
    }
    auto started = Clock::now();
    int events = 0;
    absl::StatusOr<WatchEnd> end = Watch(&events);
    if (absl::IsCancelled(end.status())) return;
    if (!end.ok()) {
      SetError(std::string(end.status().message()));
      if (!owner_->Backoff(attempt++)) return;
      continue;
    }
    bool first_watch_after_list = !watched_since_list;
    watched_since_list = true;
    if (*end == WatchEnd::kExpired) {
      // Our resourceVersion is older than what the server keeps: only a new
      // list tells what happened meanwhile.
      spdlog::info("kubernetes: {}: resourceVersion {} expired (410 Gone); relisting", type_.resource,
                   resource_version_);
      resource_version_.clear();
      // A version that expires right after a fresh list is a server in
      // trouble: do not spin.
      if (first_watch_after_list && events == 0 && !owner_->Backoff(attempt++)) return;
      continue;
    }
    if (events == 0 && Clock::now() - started < kShortWatch) {
      if (!owner_->Backoff(attempt++)) return;
    } else {
      attempt = 0;
    }
  }
}

absl::Status ResourceReflector::List() {
  std::map<Key, nlohmann::json> fresh;
  std::string version, continue_token;
  for (int page = 0; page < kMaxListPages; ++page) {
    std::string path = type_.path;
    if (options_.list_page_size > 0) {
      absl::StrAppend(&path, "?limit=", options_.list_page_size);
      if (!continue_token.empty()) absl::StrAppend(&path, "&continue=", QueryEscape(continue_token));
    }
    absl::StatusOr<HttpResponse> response = client_.Get(path);
    if (!response.ok()) return response.status();
    if (response->status == 410 && !continue_token.empty()) {
      // The snapshot our continue token pointed at is gone: start over.
      fresh.clear();
      continue_token.clear();
      continue;
    }
    const std::string what = absl::StrCat("list ", type_.resource);
    if (response->status != 200) return HttpError(what, *response, config_);
    nlohmann::json body = nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("items") ||
        !(body["items"].is_array() || body["items"].is_null())) {
      return absl::DataLossError(absl::StrCat(what, ": the answer is not a Kubernetes list"));
    }
    for (nlohmann::json& item : body["items"]) {
      // List items come without kind/apiVersion; listeners get whole objects.
      item["kind"] = type_.kind_name;
      item["apiVersion"] = type_.api_version;
      Key key = KeyOf(item);
      if (key.second.empty()) return absl::DataLossError(absl::StrCat(what, ": an item has no metadata.name"));
      fresh[key] = std::move(item);
    }
    version = MetadataString(body, "resourceVersion");
    continue_token = MetadataString(body, "continue");
    if (continue_token.empty()) break;
  }
  if (version.empty()) {
    return absl::DataLossError(absl::StrCat("list ", type_.resource, ": the answer has no resourceVersion"));
  }
  // One batch: the difference with what the listener has.
  std::vector<ResourceEvent> batch;
  for (const auto& [key, object] : known_) {
    if (!fresh.contains(key)) batch.push_back(Event(ResourceEvent::Type::kDelete, key, object));
  }
  for (const auto& [key, object] : fresh) {
    auto known = known_.find(key);
    if (known == known_.end() || known->second != object) {
      batch.push_back(Event(ResourceEvent::Type::kUpsert, key, object));
    }
  }
  spdlog::info("kubernetes: listed {} {} at resourceVersion {} ({} changes)", fresh.size(), type_.resource, version,
               batch.size());
  known_ = std::move(fresh);
  count_ = known_.size();
  resource_version_ = version;
  owner_->Deliver(std::move(batch));
  return absl::OkStatus();
}

absl::StatusOr<ResourceReflector::WatchEnd> ResourceReflector::Watch(int* events) {
  const std::string path =
      absl::StrCat(type_.path, "?watch=1&resourceVersion=", QueryEscape(resource_version_),
                   "&allowWatchBookmarks=true&timeoutSeconds=", options_.watch_timeout_seconds);
  const std::string what = absl::StrCat("watch ", type_.resource);
  bool expired = false;
  std::optional<std::string> stream_error;
  auto on_line = [&](std::string_view line) {
    nlohmann::json event = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!event.is_object() || !event.contains("type") || !event["type"].is_string() ||
        !event.contains("object") || !event["object"].is_object()) {
      stream_error = absl::StrCat(what, ": malformed watch event: ", std::string(line.substr(0, 200)));
      return false;
    }
    const std::string type = event["type"].get<std::string>();
    nlohmann::json& object = event["object"];
    if (type == "ERROR") {
      // A Status object; 410 = our resourceVersion is too old.
      int code = object.value("code", 0);
      if (code == 410) {
        expired = true;
      } else {
        stream_error = absl::StrCat(what, ": error event ", code, " (", object.value("message", ""), ")");
      }
      return false;
    }
    std::string version = MetadataString(object, "resourceVersion");
    if (!version.empty()) resource_version_ = version;
    if (type == "BOOKMARK") return true;  // only a newer resourceVersion to resume from
    Key key = KeyOf(object);
    if (key.second.empty()) {
      stream_error = absl::StrCat(what, ": ", type, " event without metadata.name");
      return false;
    }
    ++*events;
    if (type == "ADDED" || type == "MODIFIED") {
      known_[key] = object;
      count_ = known_.size();
      owner_->Deliver({Event(ResourceEvent::Type::kUpsert, key, std::move(object))});
    } else if (type == "DELETED") {
      known_.erase(key);
      count_ = known_.size();
      owner_->Deliver({Event(ResourceEvent::Type::kDelete, key, std::move(object))});
    } else {
      stream_error = absl::StrCat(what, ": unknown watch event type ", type);
      return false;
    }
    return true;
  };
  auto on_status = [&](long status) {
    if (status == 200) SetError(std::nullopt);  // connected: earlier errors are over
  };
  absl::StatusOr<HttpResponse> response = client_.Stream(path, on_line, on_status);
  if (!response.ok()) return response.status();
  if (response->status == 410) return WatchEnd::kExpired;
  if (response->status != 200) return HttpError(what, *response, config_);
  if (expired) return WatchEnd::kExpired;
  if (stream_error) return absl::UnknownError(*stream_error);
  return WatchEnd::kEnded;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterStateSource>> NewKubernetesApiSource(KubernetesApiConfig config) {
  return NewKubernetesApiSource(std::move(config), KubernetesApiSourceOptions{});
}

absl::StatusOr<std::unique_ptr<ClusterStateSource>> NewKubernetesApiSource(KubernetesApiConfig config,
                                                                           KubernetesApiSourceOptions options) {
  while (config.server.ends_with("/")) config.server.pop_back();
  if (!config.server.starts_with("https://") && !config.server.starts_with("http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("Kubernetes API server \"", config.server, "\" must be an https:// URL"));
  }
  if (!config.ca_file.empty() && access(config.ca_file.c_str(), R_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("cannot read the Kubernetes CA file ", config.ca_file));
  }
  if (options.initial_backoff.count() <= 0 || options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError("backoff: need 0 < initial_backoff <= max_backoff");
  }
  return std::unique_ptr<ClusterStateSource>(new KubernetesApiSource(std::move(config), options));
}

}  // namespace ebpfcni::policy
