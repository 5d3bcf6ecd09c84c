#include "services/policy/clusterstate/testing/fake_kube_apiserver.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <absl/strings/str_cat.h>
#include <curl/curl.h>

#ifndef EBPFCNI_FAKE_KUBE_APISERVER
#error "EBPFCNI_FAKE_KUBE_APISERVER must name testing/fake_kube_apiserver.py"
#endif

namespace ebpfcni::policy::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void RedirectOutput(const char* log) {
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
}

// Runs a command to completion (stdout/stderr to `log`), bounded by `timeout`.
absl::Status RunCommand(const std::vector<std::string>& argv, const std::string& log,
                        std::chrono::seconds timeout = std::chrono::seconds(30)) {
  // Everything the child needs is prepared before fork(): only
  // async-signal-safe calls after it.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    RedirectOutput(log.c_str());
    execvp(args[0], args.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(absl::StrCat(argv[0], " did not finish in time"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(argv[0], " failed; see ", log, ":\n", ReadFile(log)));
  }
  return absl::OkStatus();
}

size_t AppendToString(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FakeKubeApiServer>> FakeKubeApiServer::Start(const std::string& token) {
  static std::atomic<int> counter{0};
  std::unique_ptr<FakeKubeApiServer> server(new FakeKubeApiServer());
  server->instance_ = absl::StrCat("fkube-", getpid(), "-", counter++);
  server->dir_ = (fs::temp_directory_path() / absl::StrCat("clusterstate-test-", server->instance_)).string();
  fs::remove_all(server->dir_);
  fs::create_directories(server->dir_);
  server->cert_file_ = server->dir_ + "/server.crt";
  server->key_file_ = server->dir_ + "/server.key";
  const std::string log = server->dir_ + "/server.log";
  absl::Status cert = RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                  "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                                  "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", server->key_file_, "-out",
                                  server->cert_file_},
                                 log);
  if (!cert.ok()) return cert;
  server->client_cert_file_ = server->dir_ + "/client.crt";
  server->client_key_file_ = server->dir_ + "/client.key";
  absl::Status client_cert = RunCommand(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days",
       "1", "-subj", "/CN=ebpf-cni-policy", "-addext", "extendedKeyUsage=clientAuth", "-keyout",
       server->client_key_file_, "-out", server->client_cert_file_},
      log);
  if (!client_cert.ok()) return client_cert;

  const std::string port_file = server->dir_ + "/port";
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    RedirectOutput(log.c_str());
    execl("/usr/bin/python3", "python3", EBPFCNI_FAKE_KUBE_APISERVER, "--cert", server->cert_file_.c_str(),
          "--key", server->key_file_.c_str(), "--token", token.c_str(), "--client-ca",
          server->client_cert_file_.c_str(), "--port-file", port_file.c_str(), "--instance",
          server->instance_.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  server->pid_ = pid;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!fs::exists(port_file)) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      server->pid_ = -1;
      return absl::InternalError(absl::StrCat("fake API server exited early:\n", ReadFile(log)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("fake API server did not start:\n", ReadFile(log)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  server->url_ = absl::StrCat("https://127.0.0.1:", ReadFile(port_file));
  return server;
}

FakeKubeApiServer::~FakeKubeApiServer() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

std::string FakeKubeApiServer::ca_pem() const { return ReadFile(cert_file_); }

absl::StatusOr<nlohmann::json> FakeKubeApiServer::Http(const std::string& method, const std::string& endpoint,
                                                       const nlohmann::json& body) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init");
  std::string url = absl::StrCat(url_, "/fake/", endpoint);
  std::string payload = body.is_null() ? "" : body.dump();
  std::string response;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CAINFO, cert_file_.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendToString);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  }
  CURLcode result = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (result != CURLE_OK) return absl::UnavailableError(absl::StrCat(url, ": ", curl_easy_strerror(result)));
  if (code != 200) return absl::InternalError(absl::StrCat(url, ": HTTP ", code, ": ", response));
  return nlohmann::json::parse(response);
}

absl::StatusOr<nlohmann::json> FakeKubeApiServer::Control(const std::string& endpoint, const nlohmann::json& body) {
  return Http("POST", endpoint, body);
}

absl::Status FakeKubeApiServer::Delete(const std::string& kind, const std::string& ns, const std::string& name) {
  return Control("delete", {{"kind", kind}, {"namespace", ns}, {"name", name}}).status();
}

int FakeKubeApiServer::OpenWatches() {
  absl::StatusOr<nlohmann::json> state = State();
  return state.ok() ? (*state)["watches"].get<int>() : -1;
}

absl::StatusOr<nlohmann::json> FakeKubeApiServer::Requests() { return Http("GET", "requests", nullptr); }

std::vector<nlohmann::json> FakeKubeApiServer::RequestsTo(const std::string& path, RequestFilter filter) {
  std::vector<nlohmann::json> out;
  absl::StatusOr<nlohmann::json> all = Requests();
  if (!all.ok()) return out;
  for (const nlohmann::json& request : *all) {
    if (request["path"] != path) continue;
    bool watch = request["query"].contains("watch");
    if ((filter == RequestFilter::kLists && watch) || (filter == RequestFilter::kWatches && !watch)) continue;
    out.push_back(request);
  }
  return out;
}

}  // namespace ebpfcni::policy::testing
