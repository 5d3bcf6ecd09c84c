#pragma once
// HTTPS requests to the Kubernetes API with libcurl, interruptible from
// another thread: requests run on a curl multi handle that Interrupt() wakes
// (curl_multi_wakeup), so stopping the agent never waits for a watch that
// the server keeps open for minutes. One client per thread; connections are
// reused between its requests.
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include <absl/status/statusor.h>

#include "services/policy/clusterstate/kubernetes_api_source.h"

#include <curl/curl.h>

namespace ebpfcni::policy {

struct HttpResponse {
  long status = 0;   // HTTP status code
  std::string body;  // the whole body (Get), or the body of a non-200 answer (Stream)
};

class KubernetesHttpClient {
 public:
  KubernetesHttpClient(KubernetesApiConfig config, KubernetesApiSourceOptions options);
  ~KubernetesHttpClient();
  KubernetesHttpClient(const KubernetesHttpClient&) = delete;
  KubernetesHttpClient& operator=(const KubernetesHttpClient&) = delete;

  // GET `path_and_query` (e.g. "/api/v1/pods?limit=500"). Transport errors
  // are UNAVAILABLE, an interrupted request CANCELLED, an unreadable token
  // file FAILED_PRECONDITION; any HTTP status is a successful response.
  absl::StatusOr<HttpResponse> Get(const std::string& path_and_query);

  // GET whose 200 body is a stream of newline-delimited records (a watch):
  // `on_line` gets each complete line as it arrives and returns false to end
  // the stream early. Returns when the server ends the stream, on_line says
  // stop (status 200 and a body of ""), or on error as Get. `on_status`, if
  // set, gets the HTTP status as soon as the response headers are in (a
  // watch may then stay silent for minutes).
  absl::StatusOr<HttpResponse> Stream(const std::string& path_and_query,
                                      const std::function<bool(std::string_view line)>& on_line,
                                      const std::function<void(long status)>& on_status = nullptr);

  // Ends the current and every later request with CANCELLED. Thread-safe.
  void Interrupt();

 private:
  struct Transfer;
  absl::StatusOr<HttpResponse> Perform(const std::string& path_and_query, Transfer* transfer);
  absl::StatusOr<std::string> BearerToken() const;

  const KubernetesApiConfig config_;
  const KubernetesApiSourceOptions options_;
  std::mutex mu_;  // guards multi_ against Interrupt() racing the destructor
  CURLM* multi_ = nullptr;
  std::atomic<bool> interrupted_{false};
};

}  // namespace ebpfcni::policy
