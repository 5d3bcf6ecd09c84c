#include "services/datapath/host_address_monitor.h"

#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

namespace ebpfcni::datapath {
namespace {

// Every valid message means "addresses changed"; which one does not
// matter since the callback re-reads them all.
int OnMessage(nl_msg*, void* changed) {
  *static_cast<bool*>(changed) = true;
  return NL_OK;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HostAddressMonitor>> HostAddressMonitor::Start(
    std::function<void()> on_change) {
  std::unique_ptr<HostAddressMonitor> monitor(new HostAddressMonitor(std::move(on_change)));
  monitor->socket_ = nl_socket_alloc();
  if (monitor->socket_ == nullptr) return absl::ResourceExhaustedError("allocating a netlink socket");
  // Notifications are not replies to our requests: no sequence checks.
  nl_socket_disable_seq_check(monitor->socket_);
  if (int err = nl_connect(monitor->socket_, NETLINK_ROUTE); err < 0) {
    nl_socket_free(monitor->socket_);
    monitor->socket_ = nullptr;
    return absl::InternalError(absl::StrCat("connecting to rtnetlink: ", nl_geterror(err)));
  }
  if (int err = nl_socket_add_memberships(monitor->socket_, RTNLGRP_IPV4_IFADDR,
                                          RTNLGRP_IPV6_IFADDR, 0);
      err < 0) {
    nl_socket_free(monitor->socket_);
    monitor->socket_ = nullptr;
    return absl::InternalError(
        absl::StrCat("subscribing to address notifications: ", nl_geterror(err)));
  }
  nl_socket_set_nonblocking(monitor->socket_);
  monitor->thread_ = std::thread([m = monitor.get()] { m->Run(); });
  return monitor;
}

HostAddressMonitor::~HostAddressMonitor() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (socket_ != nullptr) nl_socket_free(socket_);
}

void HostAddressMonitor::Run() {
  bool changed = false;
  nl_socket_modify_cb(socket_, NL_CB_VALID, NL_CB_CUSTOM, &OnMessage, &changed);
  while (!stop_.load()) {
    // The timeout bounds how long the destructor waits.
    pollfd fd{nl_socket_get_fd(socket_), POLLIN, 0};
    int ready = poll(&fd, 1, 200);
    if (ready < 0 && errno != EINTR) {
      spdlog::error("watching host addresses: poll: {}", std::strerror(errno));
      return;
    }
    if (ready <= 0) continue;
    // Drain the burst, then react once.
    for (int i = 0; i < 1000; ++i) {
      int err = nl_recvmsgs_default(socket_);
      if (err == -NLE_AGAIN) break;
      if (err == -NLE_NOMEM || err == -NLE_MSG_OVERFLOW) {
        // The kernel dropped notifications (ENOBUFS): re-read everything.
        changed = true;
        continue;
      }
      if (err < 0) {
        spdlog::warn("watching host addresses: {}", nl_geterror(err));
        changed = true;
        break;
      }
    }
    if (changed) {
      changed = false;
      on_change_();
    }
  }
}

}  // namespace ebpfcni::datapath
