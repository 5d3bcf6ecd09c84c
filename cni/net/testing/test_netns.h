#pragma once
// Test helpers for code that configures real network namespaces.
//
// TestNetns creates a named network namespace the way container runtimes do
// (unshare + bind mount of the namespace handle under /run/netns/<name>) and
// removes it on destruction, so a test cannot leak it even when an assertion
// fails half-way.
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "cni/net/unique_fd.h"

namespace ebpfcni::net::testing {

class TestNetns {
 public:
  // name must be unique to the test run (include the pid).
  static absl::StatusOr<TestNetns> Create(const std::string& name);
  TestNetns(TestNetns&& other) noexcept;
  TestNetns& operator=(TestNetns&&) = delete;
  TestNetns(const TestNetns&) = delete;
  ~TestNetns();

  // /run/netns/<name>
  const std::string& path() const { return path_; }
  // An open handle, valid for the lifetime of the object.
  int fd() const { return fd_.get(); }

 private:
  TestNetns(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
};

// A socket created inside netns_fd (sockets stay bound to the namespace they
// were created in, whichever thread uses them later).
absl::StatusOr<UniqueFd> SocketInNetns(int netns_fd, int domain, int type);

// Deletes every host link whose name starts with prefix; a safety net for
// fixtures after the code under test failed to clean up.
void DeleteHostLinksWithPrefix(const std::string& prefix);

}  // namespace ebpfcni::net::testing
