#include "services/identity/label_filter.h"

#include <absl/strings/str_cat.h>

namespace ebpfcni::identity {

const std::vector<std::string>& LabelFilter::DefaultPatterns() {
  static const std::vector<std::string> kDefaults = {
      R"(!io\.kubernetes)",                               // runtime-set io.kubernetes.* labels
      R"(!kubernetes\.io)",                               // other kubernetes.io labels
      R"(!statefulset\.kubernetes\.io/pod-name)",         // one value per StatefulSet pod
      R"(!apps\.kubernetes\.io/pod-index)",               // one value per StatefulSet pod
      R"(!batch\.kubernetes\.io/job-completion-index)",   // one value per indexed Job pod
      R"(!batch\.kubernetes\.io/controller-uid)",         // one value per Job
      R"(!controller-uid)",                               // legacy Job label
      R"(!beta\.kubernetes\.io)",                         // node/beta labels
      R"(!k8s\.io)",
      R"(!pod-template-generation)",                      // DaemonSet rollout generation
      R"(!pod-template-hash)",                            // Deployment ReplicaSet hash
      R"(!controller-revision-hash)",                     // StatefulSet/DaemonSet revision
      R"(!annotation)",
      R"(!etcd_node)",
  };
  return kDefaults;
}

LabelFilter LabelFilter::Default() { return *FromPatterns(DefaultPatterns()); }

absl::StatusOr<LabelFilter> LabelFilter::FromPatterns(const std::vector<std::string>& patterns) {
  LabelFilter filter;
  for (const auto& text : patterns) {
    bool exclude = !text.empty() && text[0] == '!';
    std::string body = exclude ? text.substr(1) : text;
    if (body.empty()) return absl::InvalidArgumentError("empty label filter pattern");
    try {
      filter.patterns_.push_back({text, std::regex(body, std::regex::ECMAScript), exclude});
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("label filter pattern \"", text, "\" is not a valid regular expression: ", e.what()));
    }
    if (!exclude) filter.has_inclusive_ = true;
  }
  return filter;
}

bool LabelFilter::IsRelevant(const Label& label) const {
  if (label.source == kReservedSource) return true;
  if (label.key == kPodNamespaceLabel || label.key.rfind(kNamespaceLabelPrefix, 0) == 0) return true;
  bool included = !has_inclusive_;
  for (const auto& pattern : patterns_) {
    if (!std::regex_search(label.key, pattern.regex, std::regex_constants::match_continuous)) continue;
    if (pattern.exclude) return false;
    included = true;
  }
  return included;
}

LabelSet LabelFilter::Filter(const LabelSet& labels) const {
  std::vector<Label> kept;
  for (const auto& label : labels.labels()) {
    if (IsRelevant(label)) kept.push_back(label);
  }
  return LabelSet(std::move(kept));
}

}  // namespace ebpfcni::identity
