#include "services/policy/clusterstate/manifest_parser.h"

#include <set>
#include <tuple>

#include <absl/strings/str_cat.h>
#include <yaml-cpp/yaml.h>

#include "services/policy/clusterstate/yaml_to_json.h"

namespace ebpfcni::policy {
namespace {

struct KindInfo {
  const char* kind;
  const char* api_version;
  ResourceKind resource;
  bool namespaced;
};
constexpr KindInfo kKinds[] = {
    {"Pod", "v1", ResourceKind::kPod, true},
    {"Namespace", "v1", ResourceKind::kNamespace, false},
    {"NetworkPolicy", "networking.k8s.io/v1", ResourceKind::kNetworkPolicy, true},
};

class Collector {
 public:
  explicit Collector(ManifestParseResult* result) : result_(result) {}

  // False (with result_->error set) if the whole file must be rejected.
  bool Add(nlohmann::json object, int line, bool inside_list) {
    if (object.is_null()) return true;  // an empty document ("---" twice, comments only)
    if (!object.is_object()) return Fail(line, "a manifest must be a mapping with apiVersion, kind and metadata");
    auto kind_it = object.find("kind");
    if (kind_it == object.end() || !kind_it->is_string() || kind_it->get<std::string>().empty()) {
      return Fail(line, inside_list ? "List item has no kind" : "object has no kind");
    }
    const std::string kind = kind_it->get<std::string>();
    if (kind == "List" || (kind.size() > 4 && kind.ends_with("List") && object.contains("items"))) {
      auto items = object.find("items");
      if (items == object.end() || items->is_null()) return true;
      if (!items->is_array()) return Fail(line, absl::StrCat(kind, ".items must be a list"));
      for (size_t i = 0; i < items->size(); ++i) {
        nlohmann::json item = std::move((*items)[i]);
        // PodList items from the API carry no kind; supply the element kind.
        if (kind != "List" && item.is_object() && !item.contains("kind")) {
          item["kind"] = kind.substr(0, kind.size() - 4);
          if (object.contains("apiVersion")) item["apiVersion"] = object["apiVersion"];
        }
        int item_line = i < item_lines_.size() ? item_lines_[i] : line;
        if (!Add(std::move(item), item_line, true)) return false;
      }
      return true;
    }
    const KindInfo* info = nullptr;
    for (const KindInfo& k : kKinds) {
      if (kind == k.kind) info = &k;
    }
    if (info == nullptr) {
      result_->warnings.emplace_back(line, absl::StrCat("kind ", kind, " is not used by the policy agent; ignored"));
      return true;
    }
    auto api_version = object.find("apiVersion");
    if (api_version == object.end() || !api_version->is_string()) {
      return Fail(line, absl::StrCat(kind, " has no apiVersion (want ", info->api_version, ")"));
    }
    if (*api_version != info->api_version) {
      return Fail(line, absl::StrCat(kind, " has apiVersion ", api_version->get<std::string>(), ", want ",
                                     info->api_version));
    }
    auto metadata = object.find("metadata");
    if (metadata == object.end() || !metadata->is_object()) return Fail(line, absl::StrCat(kind, " has no metadata"));
    auto name = metadata->find("name");
    if (name == metadata->end() || !name->is_string() || name->get<std::string>().empty()) {
      return Fail(line, absl::StrCat(kind, " has no metadata.name"));
    }
    ManifestObject out{info->resource, "", name->get<std::string>(), nlohmann::json(), line};
    if (info->namespaced) {
      auto ns = metadata->find("namespace");
      if (ns == metadata->end() || ns->is_null() || (ns->is_string() && ns->get<std::string>().empty())) {
        (*metadata)["namespace"] = "default";  // what kubectl apply does without -n
      } else if (!ns->is_string()) {
        return Fail(line, absl::StrCat(kind, " ", out.name, ": metadata.namespace must be a string"));
      }
      out.namespace_name = (*metadata)["namespace"].get<std::string>();
    } else if (metadata->contains("namespace")) {
      metadata->erase("namespace");  // cluster-scoped: the API drops it too
    }
    if (!seen_.insert({out.kind, out.namespace_name, out.name}).second) {
      return Fail(line, absl::StrCat(kind, " ", out.namespace_name.empty() ? "" : out.namespace_name + "/", out.name,
                                     " appears twice in this file"));
    }
    out.object = std::move(object);
    result_->objects.push_back(std::move(out));
    return true;
  }

  // Lines of the items of the List being expanded (YAML only).
  void SetItemLines(std::vector<int> lines) { item_lines_ = std::move(lines); }

  bool Fail(int line, std::string message) {
    result_->ok = false;
    result_->error_line = line;
    result_->error = std::move(message);
    result_->objects.clear();
    return false;
  }

 private:
  ManifestParseResult* result_;
  std::vector<int> item_lines_;
  std::set<std::tuple<ResourceKind, std::string, std::string>> seen_;
};

int LineOfOffset(const std::string& text, size_t offset) {
  int line = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') ++line;
  }
  return line;
}

// A .json file holds one value (an object or a List), as `kubectl get -o json`
// writes. nlohmann gives no positions of values, so its objects are all
// reported at line 1; syntax errors do get their line.
void ParseJson(const std::string& text, ManifestParseResult* result) {
  Collector collector(result);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return;  // empty file: no objects
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    collector.Fail(LineOfOffset(text, e.byte > 0 ? e.byte - 1 : 0), absl::StrCat("invalid JSON: ", e.what()));
    return;
  }
  collector.Add(std::move(value), 1, false);
}

void ParseYaml(const std::string& text, ManifestParseResult* result) {
  Collector collector(result);
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    collector.Fail(e.mark.line >= 0 ? e.mark.line + 1 : 0, absl::StrCat("invalid YAML: ", e.msg));
    return;
  }
  for (const YAML::Node& document : documents) {
    int line = document.Mark().line + 1;
    absl::StatusOr<nlohmann::json> object = YamlToJson(document);
    if (!object.ok()) {
      collector.Fail(line, std::string(object.status().message()));
      return;
    }
    std::vector<int> item_lines;
    if (document.IsMap() && document["items"] && document["items"].IsSequence()) {
      for (const YAML::Node& item : document["items"]) item_lines.push_back(item.Mark().line + 1);
    }
    collector.SetItemLines(std::move(item_lines));
    if (!collector.Add(*std::move(object), line, false)) return;
  }
}

}  // namespace

ManifestParseResult ParseManifest(const std::string& text, bool json) {
  ManifestParseResult result;
  if (json) {
    ParseJson(text, &result);
  } else {
    ParseYaml(text, &result);
  }
  return result;
}

}  // namespace ebpfcni::policy
