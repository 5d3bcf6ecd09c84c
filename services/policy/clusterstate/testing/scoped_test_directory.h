#pragma once
// A directory under /tmp named after the running test (and this process), so
// parallel tests never share one; removed when the test ends, even failed.
#include <unistd.h>

#include <filesystem>
#include <string>

#include <absl/strings/str_cat.h>
#include <gtest/gtest.h>

namespace ebpfcni::policy::testing {

class ScopedTestDirectory {
 public:
  ScopedTestDirectory() {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = test ? absl::StrCat(test->test_suite_name(), "-", test->name()) : "no-test";
    for (char& c : name) {
      if (c == '/') c = '-';  // parameterised tests
    }
    path_ = std::filesystem::temp_directory_path() / absl::StrCat("clusterstate-test-", getpid(), "-", name);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScopedTestDirectory() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTestDirectory(const ScopedTestDirectory&) = delete;
  ScopedTestDirectory& operator=(const ScopedTestDirectory&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace ebpfcni::policy::testing
