// KubernetesApiConfig from a kubeconfig file or from the pod's service account.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <absl/strings/escaping.h>
#include <absl/strings/str_cat.h>
#include <yaml-cpp/yaml.h>

#include "services/policy/clusterstate/kubernetes_api_source.h"

namespace ebpfcni::policy {
namespace {

namespace fs = std::filesystem;

constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

// The entry named `name` of a kubeconfig list (clusters, users, contexts):
// [{name: x, cluster: {...}}, ...] -> the inner mapping under `field`.
absl::StatusOr<YAML::Node> FindNamed(const YAML::Node& root, const std::string& list, const std::string& field,
                                     const std::string& name, const std::string& path) {
  const YAML::Node entries = root[list];
  if (entries && entries.IsSequence()) {
    for (const YAML::Node& entry : entries) {
      if (entry["name"] && entry["name"].as<std::string>() == name) {
        if (!entry[field] || !entry[field].IsMap()) {
          return absl::InvalidArgumentError(absl::StrCat(path, ": ", list, " entry ", name, " has no ", field));
        }
        return entry[field];
      }
    }
  }
  return absl::NotFoundError(absl::StrCat(path, ": no ", list, " entry named \"", name, "\""));
}

std::string StringOr(const YAML::Node& node, const std::string& key) {
  const YAML::Node value = node[key];
  return value && value.IsScalar() ? value.as<std::string>() : "";
}

// kubectl resolves relative paths in a kubeconfig against its directory.
std::string ResolvePath(const std::string& value, const std::string& kubeconfig) {
  if (value.empty() || fs::path(value).is_absolute()) return value;
  return (fs::path(kubeconfig).parent_path() / value).lexically_normal().string();
}

absl::StatusOr<std::string> DecodeData(const std::string& value, const std::string& what, const std::string& path) {
  std::string decoded;
  if (!absl::Base64Unescape(value, &decoded)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what, " is not valid base64"));
  }
  return decoded;
}

}  // namespace

absl::StatusOr<KubernetesApiConfig> KubernetesApiConfig::FromKubeconfig(const std::string& path,
                                                                        const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrCat("cannot read kubeconfig ", path));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.mark.line + 1, ": invalid kubeconfig: ", e.msg));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": a kubeconfig is a mapping"));
  try {
    std::string context_name = context.empty() ? StringOr(root, "current-context") : context;
    if (context_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": no current-context; name the context to use"));
    }
    absl::StatusOr<YAML::Node> ctx = FindNamed(root, "contexts", "context", context_name, path);
    if (!ctx.ok()) return ctx.status();
    absl::StatusOr<YAML::Node> cluster = FindNamed(root, "clusters", "cluster", StringOr(*ctx, "cluster"), path);
    if (!cluster.ok()) return cluster.status();

    KubernetesApiConfig config;
    config.server = StringOr(*cluster, "server");
    while (config.server.ends_with("/")) config.server.pop_back();
    if (config.server.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": cluster ", StringOr(*ctx, "cluster"), " has no server"));
    }
    config.ca_file = ResolvePath(StringOr(*cluster, "certificate-authority"), path);
    if (std::string data = StringOr(*cluster, "certificate-authority-data"); !data.empty()) {
      absl::StatusOr<std::string> pem = DecodeData(data, "certificate-authority-data", path);
      if (!pem.ok()) return pem.status();
      config.ca_data = *pem;
    }
    config.insecure_skip_tls_verify = (*cluster)["insecure-skip-tls-verify"] &&
                                      (*cluster)["insecure-skip-tls-verify"].as<bool>();

    const std::string user_name = StringOr(*ctx, "user");
    if (!user_name.empty()) {
      absl::StatusOr<YAML::Node> user = FindNamed(root, "users", "user", user_name, path);
      if (!user.ok()) return user.status();
      config.token = StringOr(*user, "token");
      config.token_file = ResolvePath(StringOr(*user, "tokenFile"), path);
      config.client_cert_file = ResolvePath(StringOr(*user, "client-certificate"), path);
      config.client_key_file = ResolvePath(StringOr(*user, "client-key"), path);
      if (std::string data = StringOr(*user, "client-certificate-data"); !data.empty()) {
        absl::StatusOr<std::string> pem = DecodeData(data, "client-certificate-data", path);
        if (!pem.ok()) return pem.status();
        config.client_cert_data = *pem;
      }
      if (std::string data = StringOr(*user, "client-key-data"); !data.empty()) {
        absl::StatusOr<std::string> pem = DecodeData(data, "client-key-data", path);
        if (!pem.ok()) return pem.status();
        config.client_key_data = *pem;
      }
      bool has_credentials = !config.token.empty() || !config.token_file.empty() ||
                             !config.client_cert_file.empty() || !config.client_cert_data.empty();
      if (!has_credentials && ((*user)["exec"] || (*user)["auth-provider"])) {
        return absl::UnimplementedError(absl::StrCat(
            path, ": user ", user_name,
            " authenticates through an exec/auth-provider plugin, which the policy agent does not run; "
            "give it a token, tokenFile or client certificate"));
      }
    }
    return config;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.mark.line + 1, ": invalid kubeconfig: ", e.msg));
  }
}

absl::StatusOr<KubernetesApiConfig> KubernetesApiConfig::InCluster() { return InCluster(kServiceAccountDir); }

absl::StatusOr<KubernetesApiConfig> KubernetesApiConfig::InCluster(const std::string& service_account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') {
    return absl::FailedPreconditionError(
        "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set; "
        "use a kubeconfig or a manifest directory");
  }
  KubernetesApiConfig config;
  std::string host_text = host;
  if (host_text.find(':') != std::string::npos) host_text = absl::StrCat("[", host_text, "]");  // IPv6
  config.server = absl::StrCat("https://", host_text, ":", port);
  config.token_file = (fs::path(service_account_dir) / "token").string();
  if (!fs::exists(config.token_file)) {
    return absl::NotFoundError(absl::StrCat("service-account token ", config.token_file,
                                            " is missing; is automountServiceAccountToken off?"));
  }
  std::string ca = (fs::path(service_account_dir) / "ca.crt").string();
  if (fs::exists(ca)) config.ca_file = ca;
  return config;
}

}  // namespace ebpfcni::policy
