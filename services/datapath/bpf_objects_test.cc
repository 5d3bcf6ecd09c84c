// Pinning behaviour of BpfObjects on a real bpffs: what survives a reload
// and what happens to pins left by an incompatible build.
#include "services/datapath/bpf_objects.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "ebpfcni/datapath_abi.h"
#include "services/datapath/testing/kernel_fixtures.h"

namespace ebpfcni::datapath {
namespace {

TEST(BpfObjectsTest, ReloadReusesPinnedMapsAndRecordsPreviousPrograms) {
  testing::ScopedBpfDir dir{"objects-reuse"};
  std::filesystem::create_directories(dir.path());
  ProgramIds first_ids;
  {
    auto first = BpfObjects::Load(dir.path());
    ASSERT_TRUE(first.ok()) << first.status();
    ASSERT_TRUE((*first)->SetEndpointForIfindex(1234, 77).ok());
    first_ids = (*first)->program_ids();
    EXPECT_EQ((*first)->previous_program_ids().from_container, 0u);
  }
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/endpoint_ifidx"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/progs/from_container"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/progs/to_container"));

  auto second = BpfObjects::Load(dir.path());
  ASSERT_TRUE(second.ok()) << second.status();
  auto owner = (*second)->EndpointForIfindex(1234);
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ(*owner, std::optional<uint32_t>(77));
  EXPECT_EQ((*second)->previous_program_ids().from_container, first_ids.from_container);
  EXPECT_EQ((*second)->previous_program_ids().to_container, first_ids.to_container);
  EXPECT_NE((*second)->program_ids().from_container, first_ids.from_container);
}

TEST(BpfObjectsTest, IncompatiblePinnedMapIsReplaced) {
  testing::ScopedBpfDir dir{"objects-compat"};
  std::filesystem::create_directories(dir.path());
  // What an older build with a smaller counters struct would have left.
  int old_map = bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "endpoint_stats", sizeof(uint32_t),
                               sizeof(uint64_t), 16, nullptr);
  ASSERT_GE(old_map, 0);
  ASSERT_EQ(bpf_obj_pin(old_map, (dir.path() + "/endpoint_stats").c_str()), 0);
  close(old_map);

  auto objects = BpfObjects::Load(dir.path());
  ASSERT_TRUE(objects.ok()) << objects.status();
  bpf_map_info info{};
  uint32_t length = sizeof(info);
  ASSERT_EQ(bpf_obj_get_info_by_fd((*objects)->counters_map_fd(), &info, &length), 0);
  EXPECT_EQ(info.value_size, sizeof(ebpfcni_endpoint_counters));
  EXPECT_EQ(info.max_entries, static_cast<uint32_t>(EBPFCNI_MAX_ENDPOINTS));
}

TEST(BpfObjectsTest, PinsOfRetiredMapsAreRemoved) {
  testing::ScopedBpfDir dir{"objects-retired"};
  std::filesystem::create_directories(dir.path());
  // The single conntrack table of earlier builds (44-byte key, endpoint id).
  int old_map = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "conntrack", 44, 32, 1024, nullptr);
  ASSERT_GE(old_map, 0);
  ASSERT_EQ(bpf_obj_pin(old_map, (dir.path() + "/conntrack").c_str()), 0);
  close(old_map);

  auto objects = BpfObjects::Load(dir.path());
  ASSERT_TRUE(objects.ok()) << objects.status();
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/conntrack"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/conntrack4"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/conntrack6"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/ipcache_exact"));
}

}  // namespace
}  // namespace ebpfcni::datapath
