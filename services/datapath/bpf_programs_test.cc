// Runs the TC programs on crafted packets with BPF_PROG_TEST_RUN: verdicts
// and per-endpoint accounting, without any interface or attachment.
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstring>
#include <unistd.h>

#include <gtest/gtest.h>

#include "ebpfcni/datapath_abi.h"
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

// Runs `prog_fd` once on `frame` with skb->ifindex = `ifindex` (an
// interface of that index must exist, except for 1).
int RunOn(int prog_fd, uint32_t ifindex, const std::vector<uint8_t>& frame) {
  __sk_buff context{};
  context.ifindex = ifindex;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .ctx_in = &context,
              .ctx_size_in = sizeof(context), .repeat = 1);
  int err = bpf_prog_test_run_opts(prog_fd, &opts);
  EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN: " << std::strerror(-err);
  return static_cast<int>(opts.retval);
}

int RunOnce(int prog_fd, const std::vector<uint8_t>& frame) {
  return RunOn(prog_fd, kTestIfindex, frame);
}

// The programs' copy of the ifindex map at `ifindex` (zeros: empty).
ebpfcni_endpoint_info ArraySlot(const BpfObjects& objects, uint32_t ifindex) {
  ebpfcni_endpoint_info slot{};
  EXPECT_EQ(bpf_map_lookup_elem(objects.endpoint_array_fd(), &ifindex, &slot), 0)
      << std::strerror(errno);
  return slot;
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

TEST_F(BpfProgramsTest, EndpointArrayMirrorsTheIfindexMap) {
  ASSERT_TRUE(objects_->SetEndpointForIfindex(kTestIfindex, 12, kIdentity).ok());
  ebpfcni_endpoint_info slot = ArraySlot(*objects_, kTestIfindex);
  EXPECT_EQ(slot.endpoint_id, 12u);
  EXPECT_EQ(slot.identity, kIdentity);

  ASSERT_TRUE(objects_->RemoveIfindex(kTestIfindex, 12).ok());
  EXPECT_EQ(ArraySlot(*objects_, kTestIfindex).endpoint_id, EBPFCNI_ENDPOINT_ID_NONE);
  // Gone for the programs too: passes, not counted.
  ASSERT_TRUE(objects_->DeleteCounters(12).ok());
  EXPECT_EQ(RunOnce(objects_->from_container_fd(), frame_), kTcActOk);
  absl::StatusOr<std::vector<uint32_t>> counted = objects_->CountedEndpointIds();
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_TRUE(counted->empty());
}

// The kernel hands out interface indexes cyclically up to INT_MAX, so a
// node with churn has veths above the array's bound: their endpoints are
// judged through the hash exactly like the others.
TEST_F(BpfProgramsTest, InterfaceAboveTheArrayIsJudgedThroughTheHash) {
  uint32_t high_ifindex = EBPFCNI_ENDPOINT_ARRAY_ENTRIES + 1000 + getpid() % 100000;
  testing::ScopedVethPair veth("hi", "10.251.9.2/24", high_ifindex);
  ASSERT_TRUE(veth.ok());
  ASSERT_EQ(veth.host_ifindex(), high_ifindex);

  // Identity unknown: the endpoint's packets are dropped and counted. Were
  // the interface not found, they would pass uncounted.
  ASSERT_TRUE(objects_->SetEndpointForIfindex(high_ifindex, 21).ok());
  EXPECT_EQ(RunOn(objects_->from_container_fd(), high_ifindex, frame_), kTcActShot);
  absl::StatusOr<EndpointCounters> counters = objects_->ReadCounters(21);
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->from_pod_packets, 1u);

  ASSERT_TRUE(objects_->SetEndpointForIfindex(high_ifindex, 21, kIdentity).ok());
  EXPECT_EQ(RunOn(objects_->from_container_fd(), high_ifindex, frame_), kTcActOk);

  ASSERT_TRUE(objects_->RemoveIfindex(high_ifindex, 21).ok());
  EXPECT_EQ(RunOn(objects_->from_container_fd(), high_ifindex, frame_), kTcActOk);
  counters = objects_->ReadCounters(21);
  ASSERT_TRUE(counters.ok()) << counters.status();
  EXPECT_EQ(counters->from_pod_packets, 2u);
}

// An earlier version kept only the hash, and a crash can fall between the
// two writes: loading makes the array the hash's copy again before any
// program of the load can run.
TEST(BpfObjectsLoadTest, LoadBringsTheEndpointArrayInLineWithTheIfindexMap) {
  testing::ScopedBpfDir pins("endpoint-array");
  const std::vector<uint8_t> frame =
      BuildUdpFrame(kOtherHostMac, "10.251.0.2", "10.251.0.1", 100);
  {
    absl::StatusOr<std::unique_ptr<BpfObjects>> first = BpfObjects::Load(pins.path());
    ASSERT_TRUE(first.ok()) << first.status();
    // Only in the hash: endpoint 3 on ifindex 1, identity not known yet.
    uint32_t ifindex = kTestIfindex;
    ebpfcni_endpoint_info info{};
    info.endpoint_id = 3;
    ASSERT_EQ(bpf_map_update_elem((*first)->ifindex_map_fd(), &ifindex, &info, BPF_ANY), 0);
    // Only in the array: endpoint 8 on ifindex 5, which the hash lost.
    uint32_t stale_ifindex = 5;
    info.endpoint_id = 8;
    ASSERT_EQ(bpf_map_update_elem((*first)->endpoint_array_fd(), &stale_ifindex, &info, BPF_ANY),
              0);
  }
  absl::StatusOr<std::unique_ptr<BpfObjects>> second = BpfObjects::Load(pins.path());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(ArraySlot(**second, kTestIfindex).endpoint_id, 3u);
  EXPECT_EQ(ArraySlot(**second, 5).endpoint_id, EBPFCNI_ENDPOINT_ID_NONE);
  EXPECT_EQ(RunOnce((*second)->from_container_fd(), frame), kTcActShot);  // init identity
}

}  // namespace
}  // namespace ebpfcni::datapath
