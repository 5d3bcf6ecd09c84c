#include "cni/plugin/cni_args.h"

#include <set>
#include <vector>

#include <absl/strings/ascii.h>
#include <absl/strings/match.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

absl::Status ArgsError(absl::string_view message) {
  return CniStatus(code::kInvalidEnvironment, absl::StrCat("CNI_ARGS: ", message));
}

absl::StatusOr<bool> ParseBool(absl::string_view value) {
  // Same spellings Go's strconv.ParseBool accepts, which is what other
  // plugins use for IgnoreUnknown.
  std::string lower = absl::AsciiStrToLower(value);
  if (lower == "1" || lower == "t" || lower == "true") return true;
  if (lower == "0" || lower == "f" || lower == "false") return false;
  return ArgsError(absl::StrCat("IgnoreUnknown must be a boolean (1/0/true/false), got \"", value, "\""));
}

}  // namespace

absl::StatusOr<CniArgs> ParseCniArgs(absl::string_view text) {
  CniArgs args;
  if (text.empty()) return args;

  struct Pair {
    std::string key;           // lower-cased, for matching
    std::string original_key;  // as written, for messages
    std::string value;
  };
  std::vector<Pair> pairs;
  std::set<std::string> seen;
  for (absl::string_view item : absl::StrSplit(text, ';', absl::SkipEmpty())) {
    size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return ArgsError(absl::StrCat("\"", item, "\" is not a KEY=VALUE pair"));
    }
    std::string original_key(absl::StripAsciiWhitespace(item.substr(0, eq)));
    std::string key = absl::AsciiStrToLower(original_key);
    if (key.empty()) return ArgsError(absl::StrCat("\"", item, "\" has an empty key"));
    if (!seen.insert(key).second) {
      return ArgsError(absl::StrCat("key \"", item.substr(0, eq), "\" appears more than once"));
    }
    pairs.push_back({std::move(key), std::move(original_key), std::string(item.substr(eq + 1))});
  }

  // IgnoreUnknown may come anywhere in the list, so read it first.
  for (const auto& [key, original_key, value] : pairs) {
    if (key == "ignoreunknown") {
      absl::StatusOr<bool> flag = ParseBool(value);
      if (!flag.ok()) return flag.status();
      args.ignore_unknown = *flag;
    }
  }
  for (const auto& [key, original_key, value] : pairs) {
    if (key == "ignoreunknown") continue;
    if (key == "k8s_pod_namespace") {
      args.pod_namespace = value;
    } else if (key == "k8s_pod_name") {
      args.pod_name = value;
    } else if (key == "k8s_pod_infra_container_id") {
      args.pod_infra_container_id = value;
    } else if (key == "k8s_pod_uid") {
      args.pod_uid = value;
    } else if (!args.ignore_unknown) {
      return ArgsError(absl::StrCat("unknown key \"", original_key,
                                    "\" (known: K8S_POD_NAMESPACE, K8S_POD_NAME, "
                                    "K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID; add IgnoreUnknown=1 to "
                                    "ignore others)"));
    }
  }
  return args;
}

}  // namespace ebpfcni::cni
