// Runs the TC programs on crafted packets with BPF_PROG_TEST_RUN: verdicts
// and per-endpoint accounting, without any interface or attachment.
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "services/datapath/bpf_objects.h"
#include "services/datapath/program_runner.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

using testing::BuildUdpFrame;
using testing::kOtherHostMac;

// An allocated identity: without one an endpoint's traffic is dropped.
constexpr uint32_t kIdentity = 1000;
// BPF_PROG_TEST_RUN gives the skb to the loopback device when ctx ifindex
// is <= 1, so packets "arrive" on ifindex 1.
constexpr uint32_t kTestIfindex = 1;

// Runs `prog_fd` once on `frame` with skb->ifindex = kTestIfindex.
int RunOnce(int prog_fd, const std::vector<uint8_t>& frame) {
  __sk_buff context{};
  context.ifindex = kTestIfindex;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .ctx_in = &context,
              .ctx_size_in = sizeof(context), .repeat = 1);
  int err = bpf_prog_test_run_opts(prog_fd, &opts);
  EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN: " << std::strerror(-err);
  return static_cast<int>(opts.retval);
}

class BpfProgramsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<BpfObjects>> loaded = BpfObjects::Load(/*pin_dir=*/"");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    objects_ = *std::move(loaded);
  }
  std::unique_ptr<BpfObjects> objects_;
  const std::vector<uint8_t> frame_ = BuildUdpFrame(kOtherHostMac, "10.251.0.2", "10.251.0.1", 100);
};

TEST_F(BpfProgramsTest, FromContainerCountsAgainstTheInterfacesEndpoint) {
  ASSERT_TRUE(objects_->SetEndpointForIfindex(kTestIfindex, 42, kIdentity).ok());

  EXPECT_EQ(RunOnce(objects_->from_container_fd(), frame_), kTcActOk);
  EXPECT_EQ(RunOnce(objects_->from_container_fd(), frame_), kTcActOk);

  absl::StatusOr<EndpointCounters> counters = objects_->ReadCounters(42);
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->from_pod_packets, 2u);
  EXPECT_EQ(counters->from_pod_bytes, 2 * frame_.size());
  EXPECT_EQ(counters->to_pod_packets, 0u);
  EXPECT_EQ(counters->to_pod_bytes, 0u);
}

TEST_F(BpfProgramsTest, ToContainerCountsTheOtherDirection) {
  ASSERT_TRUE(objects_->SetEndpointForIfindex(kTestIfindex, 7, kIdentity).ok());

  EXPECT_EQ(RunOnce(objects_->to_container_fd(), frame_), kTcActOk);

  absl::StatusOr<EndpointCounters> counters = objects_->ReadCounters(7);
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->to_pod_packets, 1u);
  EXPECT_EQ(counters->to_pod_bytes, frame_.size());
  EXPECT_EQ(counters->from_pod_packets, 0u);
}

TEST_F(BpfProgramsTest, UnknownInterfacePassesUncounted) {
  // No ifindex entry: the packet is not ours, must pass, nothing counted.
  EXPECT_EQ(RunOnce(objects_->from_container_fd(), frame_), kTcActOk);
  EXPECT_EQ(RunOnce(objects_->to_container_fd(), frame_), kTcActOk);

  absl::StatusOr<std::vector<uint32_t>> counted = objects_->CountedEndpointIds();
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_TRUE(counted->empty());
}

TEST_F(BpfProgramsTest, RemovedEndpointStopsCounting) {
  ASSERT_TRUE(objects_->SetEndpointForIfindex(kTestIfindex, 9, kIdentity).ok());
  RunOnce(objects_->from_container_fd(), frame_);
  ASSERT_TRUE(objects_->RemoveIfindex(kTestIfindex, 9).ok());
  ASSERT_TRUE(objects_->DeleteCounters(9).ok());

  EXPECT_EQ(RunOnce(objects_->from_container_fd(), frame_), kTcActOk);
  absl::StatusOr<EndpointCounters> counters = objects_->ReadCounters(9);
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->from_pod_packets, 0u);
}

TEST_F(BpfProgramsTest, EndpointWithoutIdentityIsCountedButDropped) {
  ASSERT_TRUE(objects_->SetEndpointForIfindex(kTestIfindex, 3).ok());
  EXPECT_EQ(RunOnce(objects_->from_container_fd(), frame_), kTcActShot);
  absl::StatusOr<EndpointCounters> counters = objects_->ReadCounters(3);
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->from_pod_packets, 1u);
}

TEST_F(BpfProgramsTest, RemoveIfindexLeavesAnotherEndpointsEntry) {
  ASSERT_TRUE(objects_->SetEndpointForIfindex(kTestIfindex, 5).ok());
  ASSERT_TRUE(objects_->RemoveIfindex(kTestIfindex, 6).ok());
  absl::StatusOr<std::optional<uint32_t>> owner = objects_->EndpointForIfindex(kTestIfindex);
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ(*owner, std::optional<uint32_t>(5));
}

}  // namespace
}  // namespace ebpfcni::datapath
