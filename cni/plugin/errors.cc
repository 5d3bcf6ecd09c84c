#include "cni/plugin/errors.h"

#include <charconv>
#include <optional>

#include <absl/strings/cord.h>
#include <absl/strings/str_cat.h>

namespace ebpfcni::cni {
namespace {

constexpr absl::string_view kCodePayload = "type.ebpf-cni.dev/cni-error-code";
constexpr absl::string_view kDetailsPayload = "type.ebpf-cni.dev/cni-error-details";

absl::StatusCode CanonicalCodeFor(int cni_code) {
  switch (cni_code) {
    case code::kIncompatibleVersion:
    case code::kUnsupportedField:
    case code::kInvalidEnvironment:
    case code::kDecodingFailure:
    case code::kInvalidNetworkConfig:
      return absl::StatusCode::kInvalidArgument;
    case code::kUnknownContainer:
      return absl::StatusCode::kNotFound;
    case code::kTryAgainLater:
    case code::kPluginNotAvailable:
    case code::kPluginNotAvailableLimitedConnectivity:
      return absl::StatusCode::kUnavailable;
    case code::kAddressPoolExhausted:
      return absl::StatusCode::kResourceExhausted;
    case code::kAttachmentAlreadyExists:
      return absl::StatusCode::kAlreadyExists;
    case code::kCheckMismatch:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

std::optional<int> ExplicitCode(const absl::Status& status) {
  auto payload = status.GetPayload(kCodePayload);
  if (!payload) return std::nullopt;
  std::string text(*payload);
  int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

absl::Status CniStatus(int cni_code, absl::string_view message, absl::string_view details) {
  absl::Status status(CanonicalCodeFor(cni_code), message);
  status.SetPayload(kCodePayload, absl::Cord(absl::StrCat(cni_code)));
  if (!details.empty()) status.SetPayload(kDetailsPayload, absl::Cord(details));
  return status;
}

absl::Status WithCniCode(absl::Status status, int cni_code) {
  if (status.ok() || ExplicitCode(status)) return status;
  status.SetPayload(kCodePayload, absl::Cord(absl::StrCat(cni_code)));
  return status;
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status annotated(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view type_url, const absl::Cord& payload) {
    annotated.SetPayload(type_url, payload);
  });
  return annotated;
}

int CniCodeFor(const absl::Status& status) {
  if (std::optional<int> explicit_code = ExplicitCode(status)) return *explicit_code;
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      // The service is down or too slow: the runtime should retry.
      return code::kTryAgainLater;
    case absl::StatusCode::kResourceExhausted:
      return code::kAddressPoolExhausted;
    case absl::StatusCode::kAlreadyExists:
      return code::kAttachmentAlreadyExists;
    case absl::StatusCode::kFailedPrecondition:
      return code::kCheckMismatch;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kUnimplemented:
      return code::kServiceRejectedRequest;
    default:
      return code::kInternal;
  }
}

CniError ToCniError(const absl::Status& status) {
  CniError error;
  error.code = CniCodeFor(status);
  error.msg = std::string(status.message());
  if (error.msg.empty()) error.msg = absl::StatusCodeToString(status.code());
  if (auto details = status.GetPayload(kDetailsPayload)) {
    error.details = std::string(*details);
  }
  return error;
}

nlohmann::json EncodeError(const CniError& error, absl::string_view cni_version) {
  nlohmann::json out = {
      {"cniVersion", std::string(cni_version)},
      {"code", error.code},
      {"msg", error.msg},
  };
  if (!error.details.empty()) out["details"] = error.details;
  return out;
}

}  // namespace ebpfcni::cni
