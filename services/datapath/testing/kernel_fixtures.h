#pragma once
// Real-kernel fixtures for the datapath tests: a bpffs directory, a veth
// pair whose peer sits in its own network namespace, raw Ethernet frames.
// Every name carries a per-process tag so parallel runs and other engineers'
// tests never collide, and every fixture removes what it made in its
// destructor, also when the test fails.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace ebpfcni::datapath::testing {

// Short per-process tag, e.g. "ebdt1f2a3"; short enough for interface names.
const std::string& TestTag();

// Runs a shell command, returning its exit code (-1 if it did not run).
int RunCommand(const std::string& command);

// Runs a command and returns its standard output.
absl::StatusOr<std::string> CommandOutput(const std::string& command);

// A fresh directory on bpffs: /sys/fs/bpf/<tag>-<name> when /sys/fs/bpf is
// bpffs, otherwise inside a private bpffs mounted for the test (and
// unmounted again).
class ScopedBpfDir {
 public:
  explicit ScopedBpfDir(const std::string& name);
  ~ScopedBpfDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string private_mount_;
};

// A fresh directory under /tmp, removed recursively at the end.
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& name);
  ~ScopedTempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A veth pair: host side "<tag><suffix>h" in our namespace, peer
// "<tag><suffix>p" in a new namespace "<tag>-<suffix>" with address
// `peer_cidr`. Both ends are up. A non-zero `host_ifindex` asks the kernel
// for that interface index on the host side (it must be free).
class ScopedVethPair {
 public:
  ScopedVethPair(const std::string& suffix, const std::string& peer_cidr,
                 uint32_t host_ifindex = 0);
  ~ScopedVethPair();
  bool ok() const { return ok_; }
  const std::string& host_name() const { return host_name_; }
  const std::string& peer_name() const { return peer_name_; }
  const std::string& netns() const { return netns_; }
  uint32_t host_ifindex() const;
  // Deletes the pair now (the namespace stays until destruction).
  void DeleteLink();

 private:
  std::string host_name_;
  std::string peer_name_;
  std::string netns_;
  bool ok_ = false;
};

using MacAddress = std::array<uint8_t, 6>;

// A MAC that no interface has: frames to it are "for another host", so the
// receiving stack drops them and never answers or routes them, while TC
// still sees them.
inline constexpr MacAddress kOtherHostMac = {0x02, 0xeb, 0xcf, 0x00, 0x00, 0x01};

// An Ethernet/IPv4/UDP frame of exactly `size` bytes (>= 42).
std::vector<uint8_t> BuildUdpFrame(const MacAddress& destination, const std::string& source_ip,
                                   const std::string& destination_ip, size_t size);

// Sends `count` copies of `frame` out of interface `ifname` through an
// AF_PACKET socket, from inside network namespace `netns` (empty: ours).
absl::Status SendFrames(const std::string& netns, const std::string& ifname,
                        const std::vector<uint8_t>& frame, int count);

}  // namespace ebpfcni::datapath::testing
