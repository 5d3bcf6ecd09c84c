#include "services/datapath/testing/kernel_fixtures.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/magic.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>

#include "common/net/ip_address.h"
#include "services/datapath/packet_builder.h"

namespace ebpfcni::datapath::testing {
namespace {

bool IsBpffs(const std::string& path) {
  struct statfs fs {};
  return statfs(path.c_str(), &fs) == 0 &&
         static_cast<unsigned long>(fs.f_type) == BPF_FS_MAGIC;
}


}  // namespace

const std::string& TestTag() {
  static const std::string tag = absl::StrFormat("ebdt%05x", getpid() & 0xfffff);
  return tag;
}

int RunCommand(const std::string& command) {
  int status = std::system(command.c_str());
  if (status == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

absl::StatusOr<std::string> CommandOutput(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError(absl::StrCat("popen ", command));
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  int status = pclose(pipe);
  if (status != 0) {
    return absl::InternalError(absl::StrCat("`", command, "` exited with ", status));
  }
  return output;
}

ScopedBpfDir::ScopedBpfDir(const std::string& name) {
  std::string root = "/sys/fs/bpf";
  if (!IsBpffs(root)) {
    // No bpffs on this machine: mount a private instance just for the test.
    private_mount_ = absl::StrCat("/tmp/", TestTag(), "-bpffs-", name);
    std::filesystem::create_directories(private_mount_);
    if (mount("bpf", private_mount_.c_str(), "bpf", 0, nullptr) != 0) {
      std::fprintf(stderr, "mounting bpffs at %s: %s\n", private_mount_.c_str(),
                   std::strerror(errno));
    }
    root = private_mount_;
  }
  path_ = absl::StrCat(root, "/", TestTag(), "-", name);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

ScopedBpfDir::~ScopedBpfDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (!private_mount_.empty()) {
    umount2(private_mount_.c_str(), MNT_DETACH);
    std::filesystem::remove(private_mount_, ec);
  }
}

ScopedTempDir::ScopedTempDir(const std::string& name) {
  path_ = absl::StrCat("/tmp/", TestTag(), "-", name);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  std::filesystem::create_directories(path_, ec);
}

ScopedTempDir::~ScopedTempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

ScopedVethPair::ScopedVethPair(const std::string& suffix, const std::string& peer_cidr,
                               uint32_t host_ifindex)
    : host_name_(absl::StrCat(TestTag(), suffix, "h")),
      peer_name_(absl::StrCat(TestTag(), suffix, "p")),
      netns_(absl::StrCat(TestTag(), "-", suffix)) {
  // Leftovers of a crashed earlier run with the same pid would make add fail.
  RunCommand(absl::StrCat("ip link del ", host_name_, " 2>/dev/null"));
  RunCommand(absl::StrCat("ip netns del ", netns_, " 2>/dev/null"));
  ok_ = RunCommand(absl::StrCat("ip netns add ", netns_)) == 0 &&
        RunCommand(absl::StrCat("ip link add ", host_name_,
                                host_ifindex != 0 ? absl::StrCat(" index ", host_ifindex) : "",
                                " type veth peer name ", peer_name_, " netns ", netns_)) == 0 &&
        // No IPv6 link-local address: keeps the host from sending
        // neighbour discovery noise that would blur the counters.
        RunCommand(absl::StrCat("ip link set dev ", host_name_, " addrgenmode none")) == 0 &&
        RunCommand(absl::StrCat("ip -n ", netns_, " link set dev ", peer_name_,
                                " addrgenmode none")) == 0 &&
        RunCommand(absl::StrCat("ip -n ", netns_, " addr add ", peer_cidr, " dev ",
                                peer_name_)) == 0 &&
        RunCommand(absl::StrCat("ip -n ", netns_, " link set dev ", peer_name_, " up")) == 0 &&
        RunCommand(absl::StrCat("ip link set dev ", host_name_, " up")) == 0;
}

ScopedVethPair::~ScopedVethPair() {
  DeleteLink();
  RunCommand(absl::StrCat("ip netns del ", netns_, " 2>/dev/null"));
}

uint32_t ScopedVethPair::host_ifindex() const { return if_nametoindex(host_name_.c_str()); }

void ScopedVethPair::DeleteLink() {
  RunCommand(absl::StrCat("ip link del ", host_name_, " 2>/dev/null"));
}

std::vector<uint8_t> BuildUdpFrame(const MacAddress& destination, const std::string& source_ip,
                                   const std::string& destination_ip, size_t size) {
  constexpr size_t kHeaders = 14 + 20 + 8;  // Ethernet, IPv4, UDP
  std::vector<uint8_t> frame =
      PacketBuilder::Udp(*IpAddress::Parse(source_ip), *IpAddress::Parse(destination_ip),
                         60357, 9999)  // discard-ish: nobody listens on 9999
          .Payload(size > kHeaders ? size - kHeaders : 0)
          .Build();
  std::memcpy(frame.data(), destination.data(), 6);
  return frame;
}

absl::Status SendFrames(const std::string& netns, const std::string& ifname,
                        const std::vector<uint8_t>& frame, int count) {
  absl::Status result;
  // setns() only moves the calling thread, so a short-lived thread enters
  // the namespace and the test's own thread stays where it is.
  std::thread sender([&] {
    if (!netns.empty()) {
      std::string path = absl::StrCat("/run/netns/", netns);
      int ns_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns_fd < 0 || setns(ns_fd, CLONE_NEWNET) != 0) {
        result = absl::InternalError(absl::StrCat("entering ", path, ": ", std::strerror(errno)));
        if (ns_fd >= 0) close(ns_fd);
        return;
      }
      close(ns_fd);
    }
    unsigned ifindex = if_nametoindex(ifname.c_str());
    if (ifindex == 0) {
      result = absl::NotFoundError(absl::StrCat("no interface ", ifname));
      return;
    }
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      result = absl::InternalError(absl::StrCat("AF_PACKET socket: ", std::strerror(errno)));
      return;
    }
    sockaddr_ll address{};
    address.sll_family = AF_PACKET;
    address.sll_ifindex = static_cast<int>(ifindex);
    address.sll_halen = 6;
    std::memcpy(address.sll_addr, frame.data(), 6);
    for (int i = 0; i < count; ++i) {
      if (sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&address),
                 sizeof(address)) != static_cast<ssize_t>(frame.size())) {
        result = absl::InternalError(absl::StrCat("sending on ", ifname, ": ",
                                                  std::strerror(errno)));
        break;
      }
    }
    close(fd);
  });
  sender.join();
  return result;
}

}  // namespace ebpfcni::datapath::testing
