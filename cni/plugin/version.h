#pragma once
// CNI spec versions this plugin speaks, and comparisons between them.
#include <string>
#include <absl/strings/string_view.h>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

namespace ebpfcni::cni {

// The newest version; used for VERSION output and for errors when the
// requested version is unusable.
inline constexpr absl::string_view kLatestCniVersion = "1.1.0";

const std::vector<std::string>& SupportedCniVersions();
bool IsSupportedCniVersion(absl::string_view version);

struct SemVer {
  int major = 0;
  int minor = 0;
  int patch = 0;
  auto operator<=>(const SemVer&) const = default;
};

// "1.0.0" -> {1,0,0}; INVALID_ARGUMENT for anything that is not three
// dot-separated non-negative integers.
absl::StatusOr<SemVer> ParseSemVer(absl::string_view version);

// version >= minimum; false when version does not parse.
bool CniVersionAtLeast(absl::string_view version, absl::string_view minimum);

// {"cniVersion":"1.1.0","supportedVersions":[...]}.
nlohmann::json VersionInfo();

}  // namespace ebpfcni::cni
