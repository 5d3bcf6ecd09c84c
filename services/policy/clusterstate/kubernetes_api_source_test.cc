#include "services/policy/clusterstate/kubernetes_api_source.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <absl/strings/escaping.h>
#include <absl/strings/str_cat.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/policy/clusterstate/manifest_directory_source.h"
#include "services/policy/clusterstate/testing/fake_kube_apiserver.h"
#include "services/policy/clusterstate/testing/recording_listener.h"

#ifndef EBPFCNI_CLUSTERSTATE_TESTDATA
#error "EBPFCNI_CLUSTERSTATE_TESTDATA must name the testdata directory"
#endif

namespace ebpfcni::policy {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::HasSubstr;
using testing::FakeKubeApiServer;
using testing::NamespaceKey;
using testing::PodKey;
using testing::PolicyKey;
using testing::RecordingListener;
using RequestFilter = FakeKubeApiServer::RequestFilter;

constexpr char kToken[] = "test-token-0123456789";
constexpr char kPods[] = "/api/v1/pods";
constexpr char kNamespaces[] = "/api/v1/namespaces";
constexpr char kPolicies[] = "/apis/networking.k8s.io/v1/networkpolicies";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
nlohmann::json TestObject(const std::string& file) {
  return nlohmann::json::parse(ReadFile(absl::StrCat(EBPFCNI_CLUSTERSTATE_TESTDATA, "/", file)));
}
nlohmann::json SimplePod(const std::string& ns, const std::string& name, const std::string& app) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", {{"app", app}}}}},
          {"spec", {{"containers", {{{"name", "c"}, {"ports", {{{"containerPort", 8080}, {"name", "web"}}}}}}}}},
          {"status", {{"podIP", "10.244.0.9"}}}};
}

// Waits (bounded) for `condition`.
bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

class KubernetesApiSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<FakeKubeApiServer>> server = FakeKubeApiServer::Start(kToken);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    for (const char* file : {"namespace.json", "pod.json", "networkpolicy.json"}) {
      ASSERT_TRUE(server_->Upsert(TestObject(file)).ok());
    }
    options_.initial_backoff = std::chrono::milliseconds(50);
    options_.max_backoff = std::chrono::milliseconds(400);
    options_.watch_timeout_seconds = 60;
  }
  void TearDown() override {
    if (source_) source_->Stop();
    source_.reset();
    server_.reset();  // kills the server process, even after a failed assertion
  }

  KubernetesApiConfig Config() const {
    KubernetesApiConfig config;
    config.server = server_->url();
    config.ca_file = server_->ca_file();
    config.token = kToken;
    return config;
  }
  void StartSource(KubernetesApiConfig config, bool wait_synced = true) {
    absl::StatusOr<std::unique_ptr<ClusterStateSource>> source = NewKubernetesApiSource(config, options_);
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = *std::move(source);
    ASSERT_TRUE(source_->Start(&listener_).ok());
    if (wait_synced) {
      ASSERT_TRUE(listener_.WaitSynced()) << ::testing::PrintToString(source_->Status().errors);
    }
  }
  void StartSource() { StartSource(Config()); }
  // The three reflectors are watching.
  bool WaitWatching(int count = 3) { return Eventually([&] { return server_->OpenWatches() == count; }); }
  bool WaitError(const std::string& fragment) {
    return Eventually([&] {
      for (const std::string& error : source_->Status().errors) {
        if (error.find(fragment) != std::string::npos) return true;
      }
      return false;
    });
  }

  std::unique_ptr<FakeKubeApiServer> server_;
  KubernetesApiSourceOptions options_;
  RecordingListener listener_;
  std::unique_ptr<ClusterStateSource> source_;
};

// Objects as the listener must see them: what the server stored (with its
// uid and resourceVersion), with kind and apiVersion even though list items
// come without them.
TEST_F(KubernetesApiSourceTest, ListsEveryKindThenSyncs) {
  StartSource();
  auto objects = listener_.objects();
  ASSERT_EQ(objects.size(), 3u);
  const nlohmann::json& pod = objects[PodKey("shop", "web-7d4b9c6f5-x2kqp")];
  EXPECT_EQ(pod["kind"], "Pod");
  EXPECT_EQ(pod["apiVersion"], "v1");
  EXPECT_TRUE(pod["spec"]["containers"][0]["ports"][0]["containerPort"].is_number_integer());
  EXPECT_EQ(pod["status"]["podIPs"][1]["ip"], "fd00:10:244:1::11");
  EXPECT_FALSE(pod["metadata"]["uid"].get<std::string>().empty());
  nlohmann::json expected_pod = TestObject("pod.json");
  nlohmann::json got_pod = pod;
  got_pod["metadata"].erase("uid");
  got_pod["metadata"].erase("resourceVersion");
  EXPECT_EQ(got_pod, expected_pod);
  EXPECT_EQ(objects[PolicyKey("shop", "test-network-policy")]["kind"], "NetworkPolicy");
  EXPECT_EQ(objects[PolicyKey("shop", "test-network-policy")]["apiVersion"], "networking.k8s.io/v1");
  EXPECT_EQ(objects[NamespaceKey("shop")]["metadata"]["labels"]["team"], "payments");
  for (const auto& batch : listener_.batches()) {
    for (const ResourceEvent& event : batch) EXPECT_EQ(event.origin, "kubernetes");
  }

  ClusterStateStatus status = source_->Status();
  EXPECT_TRUE(status.synced);
  EXPECT_EQ(status.description, "kubernetes " + server_->url());
  EXPECT_TRUE(status.errors.empty()) << ::testing::PrintToString(status.errors);
  EXPECT_EQ(status.pods, 1u);
  EXPECT_EQ(status.namespaces, 1u);
  EXPECT_EQ(status.network_policies, 1u);

  // The protocol: a list, then a watch from the list's resourceVersion with bookmarks.
  ASSERT_TRUE(WaitWatching());
  for (const char* path : {kPods, kNamespaces, kPolicies}) {
    std::vector<nlohmann::json> lists = server_->RequestsTo(path, RequestFilter::kLists);
    std::vector<nlohmann::json> watches = server_->RequestsTo(path, RequestFilter::kWatches);
    ASSERT_EQ(lists.size(), 1u) << path;
    ASSERT_EQ(watches.size(), 1u) << path;
    EXPECT_EQ(lists[0]["query"]["limit"], "500");
    EXPECT_EQ(watches[0]["query"]["watch"], "1");
    EXPECT_EQ(watches[0]["query"]["allowWatchBookmarks"], "true");
    EXPECT_EQ(watches[0]["query"]["timeoutSeconds"], "60");
    EXPECT_FALSE(watches[0]["query"]["resourceVersion"].get<std::string>().empty());
  }
  EXPECT_EQ(listener_.synced_count(), 1);
}

TEST_F(KubernetesApiSourceTest, WatchDeliversAddModifyDeleteOneBatchEach) {
  StartSource();
  ASSERT_TRUE(WaitWatching());
  size_t before = listener_.batch_count();

  ASSERT_TRUE(server_->Upsert(SimplePod("shop", "api", "v1")).ok());
  ASSERT_TRUE(listener_.WaitObject(PodKey("shop", "api")));
  ASSERT_TRUE(server_->Upsert(SimplePod("shop", "api", "v2")).ok());
  ASSERT_TRUE(listener_.WaitObject(PodKey("shop", "api"), [](const nlohmann::json& pod) {
    return pod["metadata"]["labels"]["app"] == "v2";
  }));
  nlohmann::json policy = TestObject("networkpolicy.json");
  policy["spec"]["ingress"][0]["ports"][0]["port"] = 6380;
  ASSERT_TRUE(server_->Upsert(policy).ok());
  ASSERT_TRUE(listener_.WaitObject(PolicyKey("shop", "test-network-policy"), [](const nlohmann::json& p) {
    return p["spec"]["ingress"][0]["ports"][0]["port"] == 6380;
  }));
  ASSERT_TRUE(server_->Delete("Pod", "shop", "api").ok());
  ASSERT_TRUE(listener_.WaitGone(PodKey("shop", "api")));

  auto batches = listener_.batches();
  ASSERT_EQ(batches.size(), before + 4);
  for (size_t i = before; i < batches.size(); ++i) EXPECT_EQ(batches[i].size(), 1u);
  EXPECT_EQ(batches.back()[0].type, ResourceEvent::Type::kDelete);
  EXPECT_EQ(batches.back()[0].name, "api");
  EXPECT_EQ(batches.back()[0].namespace_name, "shop");
  EXPECT_EQ(source_->Status().pods, 1u);
  EXPECT_EQ(listener_.calls_from_other_threads(), 0);
  // Watch events never needed a relist.
  EXPECT_EQ(server_->RequestsTo(kPods, RequestFilter::kLists).size(), 1u);
}

TEST_F(KubernetesApiSourceTest, BookmarkMovesTheResumeVersion) {
  StartSource();
  ASSERT_TRUE(WaitWatching());
  // Pods change, so the namespaces' watch falls behind the global version...
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(server_->Upsert(SimplePod("shop", absl::StrCat("p", i), "x")).ok());
  ASSERT_TRUE(listener_.WaitObject(PodKey("shop", "p2")));
  // ...until a bookmark tells it the current version.
  absl::StatusOr<nlohmann::json> bookmark = server_->Control("bookmark");
  ASSERT_TRUE(bookmark.ok()) << bookmark.status();
  const std::string bookmark_version = std::to_string((*bookmark)["resourceVersion"].get<int>());
  size_t batches = listener_.batch_count();
  // The watches end (as they do after timeoutSeconds): they resume from the bookmark.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(server_->Control("close_watches").ok());
  ASSERT_TRUE(Eventually([&] { return server_->RequestsTo(kNamespaces, RequestFilter::kWatches).size() >= 2; }));
  std::vector<nlohmann::json> watches = server_->RequestsTo(kNamespaces, RequestFilter::kWatches);
  EXPECT_EQ(watches.back()["query"]["resourceVersion"], bookmark_version);
  EXPECT_EQ(server_->RequestsTo(kNamespaces, RequestFilter::kLists).size(), 1u);
  EXPECT_EQ(listener_.batch_count(), batches);  // a bookmark is not an event
}

// The watch was down while things changed and the server forgot that
// history: the source relists and delivers the difference, deletes included.
class ExpiredResourceVersionTest : public KubernetesApiSourceTest, public ::testing::WithParamInterface<bool> {};

TEST_P(ExpiredResourceVersionTest, RelistsAndDeletesWhatIsGone) {
  const bool http410 = GetParam();
  ASSERT_TRUE(server_->Upsert(SimplePod("shop", "doomed", "x")).ok());
  StartSource();
  ASSERT_TRUE(listener_.objects().contains(PodKey("shop", "doomed")));
  ASSERT_TRUE(WaitWatching());
  ASSERT_TRUE(server_->Control("mode", {{"http410", http410}}).ok());

  ASSERT_TRUE(server_->Control("outage", {{"on", true}}).ok());
  ASSERT_TRUE(WaitWatching(0));
  ASSERT_TRUE(server_->Delete("Pod", "shop", "doomed").ok());
  ASSERT_TRUE(server_->Upsert(SimplePod("shop", "newcomer", "y")).ok());
  ASSERT_TRUE(server_->Control("compact").ok());
  ASSERT_TRUE(WaitError("503"));
  size_t before = listener_.batch_count();
  ASSERT_TRUE(server_->Control("outage", {{"on", false}}).ok());

  ASSERT_TRUE(listener_.WaitGone(PodKey("shop", "doomed")));
  ASSERT_TRUE(listener_.WaitObject(PodKey("shop", "newcomer")));
  // The relist's difference is one batch: the delete and the add together;
  // namespaces and policies relisted without changes deliver nothing.
  auto batches = listener_.batches();
  ASSERT_EQ(batches.size(), before + 1);
  ASSERT_EQ(batches.back().size(), 2u);
  EXPECT_EQ(batches.back()[0].type, ResourceEvent::Type::kDelete);
  EXPECT_EQ(batches.back()[0].name, "doomed");
  EXPECT_EQ(batches.back()[1].type, ResourceEvent::Type::kUpsert);
  EXPECT_EQ(batches.back()[1].name, "newcomer");
  EXPECT_EQ(server_->RequestsTo(kPods, RequestFilter::kLists).size(), 2u);
  ASSERT_TRUE(WaitWatching());
  EXPECT_TRUE(Eventually([&] { return source_->Status().errors.empty(); }));
  EXPECT_EQ(source_->Status().pods, 2u);
}

INSTANTIATE_TEST_SUITE_P(ErrorEventOrHttp410, ExpiredResourceVersionTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Http410" : "ErrorEvent";
                         });

TEST_F(KubernetesApiSourceTest, ExpiredOpenWatchRelistsWithoutSpuriousEvents) {
  StartSource();
  ASSERT_TRUE(WaitWatching());
  size_t before = listener_.batch_count();
  ASSERT_TRUE(server_->Control("expire_watches").ok());
  ASSERT_TRUE(Eventually([&] {
    return server_->RequestsTo(kPods, RequestFilter::kLists).size() == 2 &&
           server_->RequestsTo(kNamespaces, RequestFilter::kLists).size() == 2 &&
           server_->RequestsTo(kPolicies, RequestFilter::kLists).size() == 2;
  }));
  ASSERT_TRUE(WaitWatching());
  EXPECT_EQ(listener_.batch_count(), before);
  // And it keeps following changes after the relist.
  ASSERT_TRUE(server_->Upsert(SimplePod("shop", "after", "z")).ok());
  EXPECT_TRUE(listener_.WaitObject(PodKey("shop", "after")));
}

TEST_F(KubernetesApiSourceTest, ServerErrorsBackOffWithJitterUpToTheCap) {
  ASSERT_TRUE(server_->Control("fail", {{"status", 500}, {"count", 1000}, {"resource", "pods"}}).ok());
  StartSource(Config(), /*wait_synced=*/false);
  ASSERT_TRUE(WaitError("list pods: HTTP 500"));
  EXPECT_FALSE(source_->Status().synced);
  // Let it retry for a while, then heal the server.
  ASSERT_TRUE(Eventually([&] { return server_->RequestsTo(kPods, RequestFilter::kLists).size() >= 7; }));
  ASSERT_TRUE(server_->Control("fail", {{"clear", true}}).ok());
  ASSERT_TRUE(listener_.WaitSynced());
  EXPECT_TRUE(Eventually([&] { return source_->Status().errors.empty(); }));
  EXPECT_TRUE(listener_.objects().contains(PodKey("shop", "web-7d4b9c6f5-x2kqp")));

  std::vector<nlohmann::json> lists = server_->RequestsTo(kPods, RequestFilter::kLists);
  ASSERT_GE(lists.size(), 8u);
  // Backoff 50 ms doubling, capped at 400 ms, each delay jittered to
  // [half, all] of it: 25-50, 50-100, 100-200, 200-400, 200-400, ...
  std::vector<double> gaps_ms;
  for (size_t i = 1; i < lists.size(); ++i) {
    gaps_ms.push_back((lists[i]["time"].get<double>() - lists[i - 1]["time"].get<double>()) * 1000);
  }
  // Measured where the server logs requests, so a gap also holds a request's
  // own time, which a loaded machine stretches: generous upper bounds, and
  // individual gaps may look a little short when the previous request was
  // logged late.
  const std::string gaps = ::testing::PrintToString(gaps_ms);
  EXPECT_GE(gaps_ms[0], 20) << gaps;
  EXPECT_LE(gaps_ms[0], 50 + 300) << gaps;
  double capped_sum = 0;
  for (size_t i = 3; i < gaps_ms.size() - 1; ++i) {  // the last gap includes the healing
    EXPECT_GE(gaps_ms[i], 150) << "gap " << i << " of " << gaps;
    EXPECT_LE(gaps_ms[i], 400 + 400) << "gap " << i << " of " << gaps;
    capped_sum += gaps_ms[i];
  }
  const double capped_mean = capped_sum / static_cast<double>(gaps_ms.size() - 4);
  EXPECT_GE(capped_mean, 200) << gaps;
  EXPECT_LE(capped_mean, 400 + 200) << gaps;
  // The other kinds were not held back by the failing one.
  EXPECT_EQ(server_->RequestsTo(kNamespaces, RequestFilter::kLists).size(), 1u);
}

TEST_F(KubernetesApiSourceTest, WrongTokenIsReportedAndTheTokenFileIsReReadOnReconnect) {
  const std::string token_file = server_->work_dir() + "/token";
  std::ofstream(token_file) << "not-the-token\n";
  KubernetesApiConfig config = Config();
  config.token.clear();
  config.token_file = token_file;
  StartSource(config, /*wait_synced=*/false);
  ASSERT_TRUE(WaitError("HTTP 401 (Unauthorized)"));
  ClusterStateStatus status = source_->Status();
  EXPECT_FALSE(status.synced);
  EXPECT_THAT(status.errors, Contains(HasSubstr("check the token in " + token_file)));
  EXPECT_EQ(listener_.batch_count(), 0u);

  // The kubelet rotates the projected token: the next attempt uses it.
  std::ofstream(token_file) << kToken << "\n";
  ASSERT_TRUE(listener_.WaitSynced());
  EXPECT_TRUE(Eventually([&] { return source_->Status().errors.empty(); }));
  EXPECT_EQ(listener_.objects().size(), 3u);
}

TEST_F(KubernetesApiSourceTest, UntrustedCertificateIsAnError) {
  KubernetesApiConfig config = Config();
  config.ca_file.clear();  // the system CAs do not know our self-signed certificate
  StartSource(config, /*wait_synced=*/false);
  ASSERT_TRUE(WaitError("certificate"));
  EXPECT_FALSE(source_->Status().synced);
  EXPECT_EQ(server_->RequestsTo(kPods).size(), 0u);
}

TEST_F(KubernetesApiSourceTest, InsecureSkipTlsVerifyConnects) {
  KubernetesApiConfig config = Config();
  config.ca_file.clear();
  config.insecure_skip_tls_verify = true;
  StartSource(config);
  EXPECT_EQ(listener_.objects().size(), 3u);
}

TEST_F(KubernetesApiSourceTest, ClientCertificateInsteadOfToken) {
  KubernetesApiConfig files = Config();
  files.token.clear();
  files.client_cert_file = server_->client_cert_file();
  files.client_key_file = server_->client_key_file();
  StartSource(files);
  EXPECT_EQ(listener_.objects().size(), 3u);
  source_->Stop();

  // The kubeconfig *-data form: PEM in memory.
  KubernetesApiConfig data = Config();
  data.token.clear();
  data.client_cert_data = ReadFile(server_->client_cert_file());
  data.client_key_data = ReadFile(server_->client_key_file());
  RecordingListener listener;
  absl::StatusOr<std::unique_ptr<ClusterStateSource>> source = NewKubernetesApiSource(data, options_);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->Start(&listener).ok());
  EXPECT_TRUE(listener.WaitSynced()) << ::testing::PrintToString((*source)->Status().errors);
  EXPECT_EQ(listener.objects().size(), 3u);
  (*source)->Stop();

  // Neither token nor certificate: 401.
  KubernetesApiConfig nothing = Config();
  nothing.token.clear();
  StartSource(nothing, /*wait_synced=*/false);
  EXPECT_TRUE(WaitError("HTTP 401"));
}

TEST_F(KubernetesApiSourceTest, StopInterruptsBlockedWatchesPromptly) {
  options_.watch_timeout_seconds = 300;
  StartSource();
  ASSERT_TRUE(WaitWatching());
  auto start = std::chrono::steady_clock::now();
  source_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  source_->Stop();  // idempotent
  EXPECT_TRUE(WaitWatching(0));
  // Nothing is delivered after Stop.
  size_t batches = listener_.batch_count();
  ASSERT_TRUE(server_->Upsert(SimplePod("shop", "late", "x")).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(listener_.batch_count(), batches);
}

TEST_F(KubernetesApiSourceTest, StopInterruptsBackoff) {
  options_.initial_backoff = std::chrono::seconds(20);
  options_.max_backoff = std::chrono::seconds(20);
  ASSERT_TRUE(server_->Control("fail", {{"status", 503}, {"count", 1000}}).ok());
  StartSource(Config(), /*wait_synced=*/false);
  ASSERT_TRUE(WaitError("HTTP 503"));
  auto start = std::chrono::steady_clock::now();
  source_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
}

TEST_F(KubernetesApiSourceTest, PagedListIsOneBatch) {
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(server_->Upsert(SimplePod("shop", absl::StrCat("p", i), "x")).ok());
  options_.list_page_size = 2;
  StartSource();
  std::vector<nlohmann::json> lists = server_->RequestsTo(kPods, RequestFilter::kLists);
  ASSERT_EQ(lists.size(), 4u);  // 7 pods, 2 per page
  EXPECT_FALSE(lists[0]["query"].contains("continue"));
  for (size_t i = 1; i < lists.size(); ++i) EXPECT_TRUE(lists[i]["query"].contains("continue"));
  size_t pod_batches = 0;
  for (const auto& batch : listener_.batches()) {
    if (batch[0].kind != ResourceKind::kPod) continue;
    ++pod_batches;
    EXPECT_EQ(batch.size(), 7u);
  }
  EXPECT_EQ(pod_batches, 1u);
  EXPECT_EQ(source_->Status().pods, 7u);
}

TEST_F(KubernetesApiSourceTest, KubeconfigWithEmbeddedCaAndToken) {
  const std::string kubeconfig = server_->work_dir() + "/kubeconfig";
  std::ofstream(kubeconfig) << "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                            << "clusters:\n- name: fake\n  cluster:\n    server: " << server_->url() << "/\n"
                            << "    certificate-authority-data: " << absl::Base64Escape(server_->ca_pem()) << "\n"
                            << "users:\n- name: agent\n  user:\n    token: " << kToken << "\n"
                            << "contexts:\n- name: test\n  context:\n    cluster: fake\n    user: agent\n";
  absl::StatusOr<KubernetesApiConfig> config = KubernetesApiConfig::FromKubeconfig(kubeconfig);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, server_->url());
  EXPECT_TRUE(config->ca_file.empty());
  EXPECT_EQ(config->ca_data, server_->ca_pem());
  StartSource(*config);
  EXPECT_EQ(listener_.objects().size(), 3u);
}

TEST_F(KubernetesApiSourceTest, InClusterServiceAccount) {
  const std::string dir = server_->work_dir() + "/serviceaccount";
  fs::create_directories(dir);
  std::ofstream(dir + "/token") << kToken;
  fs::copy_file(server_->ca_file(), dir + "/ca.crt");
  const std::string port = server_->url().substr(server_->url().rfind(':') + 1);
  setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", port.c_str(), 1);
  absl::StatusOr<KubernetesApiConfig> config = KubernetesApiConfig::InCluster(dir);
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, server_->url());
  EXPECT_EQ(config->token_file, dir + "/token");
  EXPECT_EQ(config->ca_file, dir + "/ca.crt");
  StartSource(*config);
  EXPECT_EQ(listener_.objects().size(), 3u);
}

// Both sources turn the same objects into the same JSON: what a manifest
// says is what the API would have returned (ints stay ints, etc.).
TEST_F(KubernetesApiSourceTest, ManifestSourceProducesTheSameObjectsAsTheApi) {
  StartSource();
  const fs::path dir = server_->work_dir() + "/manifests";
  fs::create_directories(dir);
  fs::copy_file(absl::StrCat(EBPFCNI_CLUSTERSTATE_TESTDATA, "/cluster.yaml"), dir / "cluster.yaml");
  absl::StatusOr<std::unique_ptr<ClusterStateSource>> manifests = NewManifestDirectorySource(dir.string());
  ASSERT_TRUE(manifests.ok()) << manifests.status();
  RecordingListener manifest_listener;
  ASSERT_TRUE((*manifests)->Start(&manifest_listener).ok());
  ASSERT_TRUE(manifest_listener.WaitSynced());
  (*manifests)->Stop();

  auto from_api = listener_.objects();
  auto from_manifests = manifest_listener.objects();
  ASSERT_EQ(from_api.size(), from_manifests.size());
  for (auto& [key, object] : from_api) {
    ASSERT_TRUE(from_manifests.contains(key));
    object["metadata"].erase("uid");  // set by the server
    object["metadata"].erase("resourceVersion");
    EXPECT_EQ(object, from_manifests[key]) << object.dump(1) << "\n---\n" << from_manifests[key].dump(1);
  }
}

TEST(KubernetesApiSourceConfigTest, RejectsWhatCannotWork) {
  KubernetesApiConfig config;
  config.server = "10.0.0.1:443";
  absl::StatusOr<std::unique_ptr<ClusterStateSource>> no_scheme = NewKubernetesApiSource(config);
  ASSERT_FALSE(no_scheme.ok());
  EXPECT_EQ(no_scheme.status().code(), absl::StatusCode::kInvalidArgument);
  config.server = "https://10.0.0.1:443";
  config.ca_file = "/nonexistent/ca.crt";
  absl::StatusOr<std::unique_ptr<ClusterStateSource>> no_ca = NewKubernetesApiSource(config);
  ASSERT_FALSE(no_ca.ok());
  EXPECT_EQ(no_ca.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(no_ca.status().message()), HasSubstr("/nonexistent/ca.crt"));
}

}  // namespace
}  // namespace ebpfcni::policy
