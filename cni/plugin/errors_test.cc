#include "cni/plugin/errors.h"

#include <gtest/gtest.h>

namespace ebpfcni::cni {
namespace {

TEST(ErrorsTest, ExplicitCodeAndDetailsSurvive) {
  absl::Status status = CniStatus(code::kInvalidNetworkConfig, "bad mtu", "mtu must be an integer");
  CniError error = ToCniError(status);
  EXPECT_EQ(error.code, 7);
  EXPECT_EQ(error.msg, "bad mtu");
  EXPECT_EQ(error.details, "mtu must be an integer");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST(ErrorsTest, CanonicalCodesMap) {
  EXPECT_EQ(CniCodeFor(absl::UnavailableError("x")), code::kTryAgainLater);
  EXPECT_EQ(CniCodeFor(absl::DeadlineExceededError("x")), code::kTryAgainLater);
  EXPECT_EQ(CniCodeFor(absl::ResourceExhaustedError("x")), code::kAddressPoolExhausted);
  EXPECT_EQ(CniCodeFor(absl::AlreadyExistsError("x")), code::kAttachmentAlreadyExists);
  EXPECT_EQ(CniCodeFor(absl::FailedPreconditionError("x")), code::kCheckMismatch);
  EXPECT_EQ(CniCodeFor(absl::InvalidArgumentError("x")), code::kServiceRejectedRequest);
  EXPECT_EQ(CniCodeFor(absl::InternalError("x")), code::kInternal);
}

TEST(ErrorsTest, WithCniCodeDoesNotOverrideAMoreSpecificCode) {
  absl::Status inner = CniStatus(code::kUnknownContainer, "gone");
  EXPECT_EQ(CniCodeFor(WithCniCode(inner, code::kHostNetworkFailure)), code::kUnknownContainer);
  EXPECT_EQ(CniCodeFor(WithCniCode(absl::InternalError("x"), code::kHostNetworkFailure)),
            code::kHostNetworkFailure);
  EXPECT_TRUE(WithCniCode(absl::OkStatus(), 5).ok());
}

TEST(ErrorsTest, AnnotateKeepsCodeAndPayload) {
  absl::Status annotated = Annotate(CniStatus(code::kIoFailure, "read failed"), "loading config");
  EXPECT_EQ(annotated.message(), "loading config: read failed");
  EXPECT_EQ(CniCodeFor(annotated), code::kIoFailure);
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

TEST(ErrorsTest, EncodesSpecJson) {
  nlohmann::json json = EncodeError({11, "IPAM unreachable", ""}, "1.0.0");
  EXPECT_EQ(json, nlohmann::json::parse(R"({"cniVersion":"1.0.0","code":11,"msg":"IPAM unreachable"})"));
  json = EncodeError({7, "bad", "more"}, "0.4.0");
  EXPECT_EQ(json["details"], "more");
  EXPECT_EQ(json["code"], 7);
}

TEST(ErrorsTest, EmptyMessageStillSaysSomething) {
  EXPECT_FALSE(ToCniError(absl::UnknownError("")).msg.empty());
}

}  // namespace
}  // namespace ebpfcni::cni
