#pragma once
// A per-test scratch directory under /tmp with a recognisable prefix,
// removed when the test ends (pass or fail).
#include <stdlib.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace ebpfcni::ipam {

class TestTempDir {
 public:
  TestTempDir() {
    std::string pattern = "/tmp/ebpfcni-ipam-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = pattern;
  }
  ~TestTempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TestTempDir(const TestTempDir&) = delete;
  TestTempDir& operator=(const TestTempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace ebpfcni::ipam
