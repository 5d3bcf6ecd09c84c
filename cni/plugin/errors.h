#pragma once
// CNI errors. Inside the plugin every failure is an absl::Status; the CNI
// error code (SPEC.md "Error" section) rides along as a status payload so a
// low layer can say "this is code 4" and the top level prints the spec error
// JSON without every layer knowing about CNI codes. Statuses without an
// explicit code are mapped from their canonical code (see CniCodeFor).
#include <string>
#include <absl/strings/string_view.h>

#include <absl/status/status.h>
#include <nlohmann/json.hpp>

namespace ebpfcni::cni {

// Well-known codes from the CNI spec (1.1.0) and our plugin-specific ones
// (>= 100). Keep docs/cni-config.md in sync.
namespace code {
inline constexpr int kIncompatibleVersion = 1;
inline constexpr int kUnsupportedField = 2;
inline constexpr int kUnknownContainer = 3;
inline constexpr int kInvalidEnvironment = 4;
inline constexpr int kIoFailure = 5;
inline constexpr int kDecodingFailure = 6;
inline constexpr int kInvalidNetworkConfig = 7;
inline constexpr int kTryAgainLater = 11;
inline constexpr int kPluginNotAvailable = 50;
inline constexpr int kPluginNotAvailableLimitedConnectivity = 51;
// Plugin-specific.
inline constexpr int kAddressPoolExhausted = 100;
inline constexpr int kAttachmentAlreadyExists = 101;
inline constexpr int kCheckMismatch = 102;
inline constexpr int kServiceRejectedRequest = 103;
inline constexpr int kHostNetworkFailure = 104;
inline constexpr int kInternal = 999;
}  // namespace code

// Status carrying an explicit CNI error code (and optional details text).
// The canonical code is chosen to match, so callers that only look at
// absl codes still see something sensible.
absl::Status CniStatus(int cni_code, absl::string_view message, absl::string_view details = {});

// Adds a CNI code to a status that has none yet; a code already set by a
// lower layer wins because it is more specific.
absl::Status WithCniCode(absl::Status status, int cni_code);

// Prefixes the message ("context: message") keeping code and payloads.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// The CNI error code for a (non-OK) status: the explicit one, otherwise
// mapped from the canonical code (UNAVAILABLE/DEADLINE_EXCEEDED -> 11,
// RESOURCE_EXHAUSTED -> 100, ALREADY_EXISTS -> 101, ... -> 999).
int CniCodeFor(const absl::Status& status);

struct CniError {
  int code = code::kInternal;
  std::string msg;
  std::string details;
};

CniError ToCniError(const absl::Status& status);

// {"cniVersion": ..., "code": N, "msg": ..., "details": ...} (details only
// when non-empty).
nlohmann::json EncodeError(const CniError& error, absl::string_view cni_version);

}  // namespace ebpfcni::cni
