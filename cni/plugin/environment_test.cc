#include "cni/plugin/environment.h"

#include <map>

#include <gtest/gtest.h>

#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

EnvLookup FromMap(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::map<std::string, std::string> AddEnv() {
  return {{"CNI_COMMAND", "ADD"},
          {"CNI_CONTAINERID", "abc123"},
          {"CNI_NETNS", "/var/run/netns/x"},
          {"CNI_IFNAME", "eth0"},
          {"CNI_ARGS", "IgnoreUnknown=1"},
          {"CNI_PATH", "/opt/cni/bin"}};
}

TEST(EnvironmentTest, ParsesAdd) {
  absl::StatusOr<CniEnvironment> env = ParseEnvironment(FromMap(AddEnv()));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->command, Command::kAdd);
  EXPECT_EQ(env->container_id, "abc123");
  EXPECT_EQ(env->netns, "/var/run/netns/x");
  EXPECT_EQ(env->ifname, "eth0");
  EXPECT_EQ(env->args, "IgnoreUnknown=1");
  EXPECT_EQ(env->path, "/opt/cni/bin");
}

TEST(EnvironmentTest, MissingOrUnknownCommandIsCode4) {
  for (const char* command : {"", "add", "FOO"}) {
    auto vars = AddEnv();
    vars["CNI_COMMAND"] = command;
    absl::StatusOr<CniEnvironment> env = ParseEnvironment(FromMap(vars));
    ASSERT_FALSE(env.ok()) << command;
    EXPECT_EQ(CniCodeFor(env.status()), code::kInvalidEnvironment);
  }
  auto vars = AddEnv();
  vars.erase("CNI_COMMAND");
  EXPECT_EQ(CniCodeFor(ParseEnvironment(FromMap(vars)).status()), code::kInvalidEnvironment);
}

TEST(EnvironmentTest, AddAndCheckNeedAllThree) {
  for (const char* command : {"ADD", "CHECK"}) {
    for (const char* missing : {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"}) {
      auto vars = AddEnv();
      vars["CNI_COMMAND"] = command;
      vars.erase(missing);
      absl::StatusOr<CniEnvironment> env = ParseEnvironment(FromMap(vars));
      ASSERT_FALSE(env.ok()) << command << " without " << missing;
      EXPECT_EQ(CniCodeFor(env.status()), code::kInvalidEnvironment);
      EXPECT_NE(env.status().message().find(missing), absl::string_view::npos) << env.status();
    }
  }
}

TEST(EnvironmentTest, DelAllowsEmptyNetns) {
  auto vars = AddEnv();
  vars["CNI_COMMAND"] = "DEL";
  vars["CNI_NETNS"] = "";
  absl::StatusOr<CniEnvironment> env = ParseEnvironment(FromMap(vars));
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->command, Command::kDel);
  vars.erase("CNI_IFNAME");
  EXPECT_FALSE(ParseEnvironment(FromMap(vars)).ok());
}

TEST(EnvironmentTest, VersionStatusGcNeedNothingElse) {
  for (const char* command : {"VERSION", "STATUS", "GC"}) {
    absl::StatusOr<CniEnvironment> env = ParseEnvironment(FromMap({{"CNI_COMMAND", command}}));
    ASSERT_TRUE(env.ok()) << command << ": " << env.status();
    EXPECT_EQ(CommandName(env->command), command);
  }
}

TEST(EnvironmentTest, RejectsBadContainerIdsAndInterfaceNames) {
  for (const char* id : {"-abc", "_abc", "a/b", "a b", "a:b"}) {
    auto vars = AddEnv();
    vars["CNI_CONTAINERID"] = id;
    EXPECT_EQ(CniCodeFor(ParseEnvironment(FromMap(vars)).status()), code::kInvalidEnvironment) << id;
  }
  for (const char* ifname : {"0123456789abcdef", ".", "..", "eth/0", "eth:0", "eth 0", "eth\t0"}) {
    auto vars = AddEnv();
    vars["CNI_IFNAME"] = ifname;
    EXPECT_EQ(CniCodeFor(ParseEnvironment(FromMap(vars)).status()), code::kInvalidEnvironment) << ifname;
  }
}

TEST(EnvironmentTest, ValidNames) {
  EXPECT_TRUE(IsValidContainerId("a"));
  EXPECT_TRUE(IsValidContainerId("0abc_def.g-h"));
  EXPECT_TRUE(IsValidInterfaceName("eth0"));
  EXPECT_TRUE(IsValidInterfaceName("0123456789abcde"));  // 15 chars
  EXPECT_TRUE(IsValidInterfaceName("net1.100"));
}

}  // namespace
}  // namespace ebpfcni::cni
