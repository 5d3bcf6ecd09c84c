#include "services/policy/clusterstate/kubernetes_http_client.h"

#include <fstream>
#include <sstream>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>
#include <curl/curl.h>

namespace ebpfcni::policy {

// One request's buffers and where its bytes go.
struct KubernetesHttpClient::Transfer {
  const std::function<bool(std::string_view)>* on_line = nullptr;  // null: collect the whole body
  const std::function<void(long)>* on_status = nullptr;
  std::atomic<bool>* interrupted = nullptr;
  CURL* easy = nullptr;
  std::string body;     // whole body, or the unfinished last line of a stream
  bool stopped_by_reader = false;

  static size_t Write(char* data, size_t size, size_t count, void* self) {
    auto* transfer = static_cast<Transfer*>(self);
    size_t bytes = size * count;
    if (transfer->interrupted->load()) return 0;  // abort: CURLE_WRITE_ERROR
    long status = 0;
    curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &status);
    transfer->body.append(data, bytes);
    // Only a 200 answer is a stream; an error status carries a Status object.
    if (transfer->on_line == nullptr || status != 200) return bytes;
    size_t start = 0;
    for (size_t newline; (newline = transfer->body.find('\n', start)) != std::string::npos; start = newline + 1) {
      std::string_view line(transfer->body.data() + start, newline - start);
      if (line.empty()) continue;
      if (!(*transfer->on_line)(line)) {
        transfer->stopped_by_reader = true;
        return 0;
      }
    }
    transfer->body.erase(0, start);
    return bytes;
  }

  static size_t Header(char* data, size_t size, size_t count, void* self) {
    auto* transfer = static_cast<Transfer*>(self);
    size_t bytes = size * count;
    std::string_view line(data, bytes);
    // The empty line ends the headers of the final response.
    if ((line == "\r\n" || line == "\n") && transfer->on_status != nullptr && *transfer->on_status) {
      long status = 0;
      curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &status);
      if (status >= 200) (*transfer->on_status)(status);
    }
    return bytes;
  }
};

namespace {

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

KubernetesHttpClient::KubernetesHttpClient(KubernetesApiConfig config, KubernetesApiSourceOptions options)
    : config_(std::move(config)), options_(options) {
  GlobalInitOnce();
  multi_ = curl_multi_init();
}

KubernetesHttpClient::~KubernetesHttpClient() {
  std::lock_guard<std::mutex> lock(mu_);
  curl_multi_cleanup(multi_);
  multi_ = nullptr;
}

void KubernetesHttpClient::Interrupt() {
  interrupted_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  if (multi_ != nullptr) curl_multi_wakeup(multi_);
}

absl::StatusOr<std::string> KubernetesHttpClient::BearerToken() const {
  if (config_.token_file.empty()) return config_.token;
  // Read at every connection: kubelet rotates projected tokens in place.
  std::ifstream in(config_.token_file);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read the service-account token file ", config_.token_file));
  }
  std::stringstream token;
  token << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(token.str()));
}

absl::StatusOr<HttpResponse> KubernetesHttpClient::Get(const std::string& path_and_query) {
  Transfer transfer;
  return Perform(path_and_query, &transfer);
}

absl::StatusOr<HttpResponse> KubernetesHttpClient::Stream(const std::string& path_and_query,
                                                          const std::function<bool(std::string_view)>& on_line,
                                                          const std::function<void(long)>& on_status) {
  Transfer transfer;
  transfer.on_line = &on_line;
  transfer.on_status = &on_status;
  return Perform(path_and_query, &transfer);
}

absl::StatusOr<HttpResponse> KubernetesHttpClient::Perform(const std::string& path_and_query, Transfer* transfer) {
  if (interrupted_) return absl::CancelledError("stopping");
  absl::StatusOr<std::string> token = BearerToken();
  if (!token.ok()) return token.status();

  const std::string url = config_.server + path_and_query;
  CURL* easy = curl_easy_init();
  if (easy == nullptr) return absl::ResourceExhaustedError("curl_easy_init failed");
  transfer->easy = easy;
  transfer->interrupted = &interrupted_;
  curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
  std::string authorization;
  if (!token->empty()) {
    authorization = absl::StrCat("Authorization: Bearer ", *token);
    headers = curl_slist_append(headers, authorization.c_str());
  }
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "ebpf-cni-policy");
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  // A list must finish; a watch ends by itself after timeoutSeconds, so a
  // watch still open well past that is a dead connection.
  long timeout_ms = transfer->on_line ? (options_.watch_timeout_seconds + 30) * 1000L : 120'000L;
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");  // gzip lists when the server offers it
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Transfer::Write);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, transfer);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Transfer::Header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, transfer);
  if (config_.insecure_skip_tls_verify) {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!config_.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, config_.ca_file.c_str());
  curl_blob ca_blob{const_cast<char*>(config_.ca_data.data()), config_.ca_data.size(), CURL_BLOB_COPY};
  if (!config_.ca_data.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &ca_blob);
  if (!config_.client_cert_file.empty()) curl_easy_setopt(easy, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
  if (!config_.client_key_file.empty()) curl_easy_setopt(easy, CURLOPT_SSLKEY, config_.client_key_file.c_str());
  curl_blob cert_blob{const_cast<char*>(config_.client_cert_data.data()), config_.client_cert_data.size(),
                      CURL_BLOB_COPY};
  curl_blob key_blob{const_cast<char*>(config_.client_key_data.data()), config_.client_key_data.size(),
                     CURL_BLOB_COPY};
  if (!config_.client_cert_data.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &cert_blob);
  }
  if (!config_.client_key_data.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
    curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &key_blob);
  }
  char error_buffer[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);

  curl_multi_add_handle(multi_, easy);
  CURLcode result = CURLE_OK;
  bool done = false;
  while (!done && !interrupted_) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi_, &running);
    if (mc != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      break;
    }
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
      if (message->msg == CURLMSG_DONE && message->easy_handle == easy) {
        result = message->data.result;
        done = true;
      }
    }
    if (done) break;
    // Sleeps until there is I/O, Interrupt() wakes it, or a second passes
    // (curl's own timers, e.g. the connect timeout, run from perform).
    curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
  }
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(multi_, easy);
  curl_easy_cleanup(easy);
  curl_slist_free_all(headers);

  if (interrupted_) return absl::CancelledError("stopping");
  if (transfer->stopped_by_reader) return HttpResponse{status, ""};
  if (result != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": ",
                                               error_buffer[0] ? error_buffer : curl_easy_strerror(result)));
  }
  HttpResponse response{status, std::move(transfer->body)};
  if (transfer->on_line != nullptr && status == 200) response.body.clear();  // an unfinished last line
  return response;
}

}  // namespace ebpfcni::policy
