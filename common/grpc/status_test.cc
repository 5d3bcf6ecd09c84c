#include "common/grpc/status.h"

#include <gtest/gtest.h>

namespace ebpfcni {
namespace {

TEST(StatusConversionTest, KeepsCodeAndMessageBothWays) {
  absl::Status in = absl::ResourceExhaustedError("pool default-ipv4 (10.0.0.0/30) is exhausted");
  grpc::Status wire = ToGrpcStatus(in);
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(wire.error_message(), "pool default-ipv4 (10.0.0.0/30) is exhausted");
  absl::Status back = FromGrpcStatus(wire);
  EXPECT_EQ(back, in);
}

TEST(StatusConversionTest, OkStaysOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(StatusConversionTest, UnavailableMapsToUnavailable) {
  auto s = FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed"));
  EXPECT_TRUE(absl::IsUnavailable(s));
}

}  // namespace
}  // namespace ebpfcni
