#pragma once
// Which labels are security-relevant, i.e. take part in an identity.
//
// Labels that differ between instances of the same workload (pod-template-
// hash, controller-revision-hash, statefulset pod names, job indexes) would
// give every pod its own identity and grow every policy map with each new
// pod, so they are dropped. The defaults follow the list Cilium documents in
// "Limiting Identity-Relevant Labels" (docs/identity.md has ours).
//
// Patterns are regular expressions matched against the start of a label key.
// "!pattern" excludes; a pattern without "!" includes. When at least one
// inclusive pattern exists, only labels matching an inclusive pattern are
// kept. The pod namespace label, namespace labels and reserved labels are
// always kept: policy selectors depend on them.
#include <regex>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include "services/identity/labels.h"

namespace ebpfcni::identity {

class LabelFilter {
 public:
  // The default exclusions.
  static LabelFilter Default();
  // Parses patterns; INVALID_ARGUMENT naming a bad regular expression.
  static absl::StatusOr<LabelFilter> FromPatterns(const std::vector<std::string>& patterns);
  static const std::vector<std::string>& DefaultPatterns();

  bool IsRelevant(const Label& label) const;
  LabelSet Filter(const LabelSet& labels) const;

 private:
  struct Pattern {
    std::string text;
    std::regex regex;
    bool exclude;
  };
  std::vector<Pattern> patterns_;
  bool has_inclusive_ = false;
};

}  // namespace ebpfcni::identity
