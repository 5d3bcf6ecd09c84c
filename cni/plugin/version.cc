#include "cni/plugin/version.h"

#include <algorithm>
#include <charconv>

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>

namespace ebpfcni::cni {

const std::vector<std::string>& SupportedCniVersions() {
  // 0.1.0/0.2.0 used a different result format (ip4/ip6) that nothing
  // current sends; they are rejected with code 1.
  static const std::vector<std::string> kVersions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  return kVersions;
}

bool IsSupportedCniVersion(absl::string_view version) {
  const auto& versions = SupportedCniVersions();
  return std::find(versions.begin(), versions.end(), version) != versions.end();
}

absl::StatusOr<SemVer> ParseSemVer(absl::string_view version) {
  std::vector<absl::string_view> parts = absl::StrSplit(version, '.');
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat("version \"", version, "\" is not of the form X.Y.Z"));
  }
  int numbers[3];
  for (int i = 0; i < 3; ++i) {
    absl::string_view part = parts[i];
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), numbers[i]);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size() || numbers[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("version \"", version, "\" is not of the form X.Y.Z"));
    }
  }
  return SemVer{numbers[0], numbers[1], numbers[2]};
}

bool CniVersionAtLeast(absl::string_view version, absl::string_view minimum) {
  absl::StatusOr<SemVer> have = ParseSemVer(version);
  absl::StatusOr<SemVer> want = ParseSemVer(minimum);
  return have.ok() && want.ok() && *have >= *want;
}

nlohmann::json VersionInfo() {
  return {{"cniVersion", std::string(kLatestCniVersion)}, {"supportedVersions", SupportedCniVersions()}};
}

}  // namespace ebpfcni::cni
