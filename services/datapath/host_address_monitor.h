#pragma once
// Follows the addresses (and, optionally, the links) of this network
// namespace's interfaces through a netlink (libnl-route-3) subscription to
// RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR (RTNLGRP_LINK), so the
// ipcache's "host" entries track address changes (DHCP renewals, addresses
// added to a node later) instead of only what existed when the datapath
// started, and endpoint watchers learn when a pod's veth disappears.
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
  // `on_addresses` runs after address changes, `on_links` after interfaces
  // appeared, changed or disappeared; either may be empty (not subscribed).
  static absl::StatusOr<std::unique_ptr<HostAddressMonitor>> Start(
      std::function<void()> on_addresses, std::function<void()> on_links = nullptr);
  ~HostAddressMonitor();  // stops and joins
  HostAddressMonitor(const HostAddressMonitor&) = delete;
  HostAddressMonitor& operator=(const HostAddressMonitor&) = delete;

 private:
  HostAddressMonitor(std::function<void()> on_addresses, std::function<void()> on_links)
      : on_addresses_(std::move(on_addresses)), on_links_(std::move(on_links)) {}
  void Run();

  std::function<void()> on_addresses_;
  std::function<void()> on_links_;
  nl_sock* socket_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace ebpfcni::datapath
