#pragma once
// Runs testing/fake_kube_apiserver.py (an HTTPS server speaking the
// Kubernetes list/watch protocol) for a test: makes a self-signed certificate
// for 127.0.0.1 and a client certificate with openssl, starts the server on an ephemeral port under a
// test-unique instance name, and kills it in the destructor (it also dies
// with the test process: PR_SET_PDEATHSIG, and its own parent check).
#include <sys/types.h>

#include <memory>
#include <string>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

namespace ebpfcni::policy::testing {

class FakeKubeApiServer {
 public:
  // `token`: the bearer token the API accepts.
  static absl::StatusOr<std::unique_ptr<FakeKubeApiServer>> Start(const std::string& token);
  ~FakeKubeApiServer();

  const std::string& url() const { return url_; }            // "https://127.0.0.1:<port>"
  const std::string& ca_file() const { return cert_file_; }  // the server's self-signed certificate
  std::string ca_pem() const;
  // A client certificate (and key, PEM files) the server accepts instead of the token.
  const std::string& client_cert_file() const { return client_cert_file_; }
  const std::string& client_key_file() const { return client_key_file_; }
  const std::string& instance() const { return instance_; }
  const std::string& work_dir() const { return dir_; }

  // The /fake/* control API (see the script's docstring).
  absl::StatusOr<nlohmann::json> Control(const std::string& endpoint, const nlohmann::json& body = nullptr);
  absl::StatusOr<nlohmann::json> Upsert(const nlohmann::json& object) { return Control("upsert", object); }
  absl::Status Delete(const std::string& kind, const std::string& ns, const std::string& name);
  // {"resourceVersion": N, "watches": open watch streams}.
  absl::StatusOr<nlohmann::json> State() { return Http("GET", "state", nullptr); }
  int OpenWatches();
  // Every API request served so far (method, path, query, status, time).
  absl::StatusOr<nlohmann::json> Requests();
  // Requests to one API path (e.g. "/api/v1/pods"), optionally only watches or only lists.
  enum class RequestFilter { kAll, kLists, kWatches };
  std::vector<nlohmann::json> RequestsTo(const std::string& path, RequestFilter filter = RequestFilter::kAll);

 private:
  FakeKubeApiServer() = default;
  absl::StatusOr<nlohmann::json> Http(const std::string& method, const std::string& endpoint,
                                      const nlohmann::json& body);

  std::string dir_, cert_file_, key_file_, client_cert_file_, client_key_file_, url_, instance_;
  pid_t pid_ = -1;
};

}  // namespace ebpfcni::policy::testing
