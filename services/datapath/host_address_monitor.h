#pragma once
// Follows the addresses of this network namespace's interfaces through a
// netlink (libnl-route-3) subscription to RTNLGRP_IPV4_IFADDR and
// RTNLGRP_IPV6_IFADDR, so the ipcache's "host" entries track address
// changes (DHCP renewals, addresses added to a node later) instead of only
// what existed when the datapath started.
//
// The callback runs on the monitor's own thread after each burst of address
// notifications (and once if the socket overflowed and events may have been
// lost); it re-reads the full address list, so lost or coalesced
// notifications cost nothing but a re-read. The thread lives in the network
// namespace of the thread that calls Start().
#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include <absl/status/statusor.h>

struct nl_sock;

namespace ebpfcni::datapath {

class HostAddressMonitor {
 public:
  static absl::StatusOr<std::unique_ptr<HostAddressMonitor>> Start(std::function<void()> on_change);
  ~HostAddressMonitor();  // stops and joins
  HostAddressMonitor(const HostAddressMonitor&) = delete;
  HostAddressMonitor& operator=(const HostAddressMonitor&) = delete;

 private:
  explicit HostAddressMonitor(std::function<void()> on_change) : on_change_(std::move(on_change)) {}
  void Run();

  std::function<void()> on_change_;
  nl_sock* socket_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace ebpfcni::datapath
