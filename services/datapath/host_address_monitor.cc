#include "services/datapath/host_address_monitor.h"

#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

namespace ebpfcni::datapath {
namespace {

struct Changes {
  bool addresses = false;
  bool links = false;
};

// Which kind of thing changed is all that matters: the callbacks re-read
// the whole state.
int OnMessage(nl_msg* message, void* context) {
  auto* changes = static_cast<Changes*>(context);
  switch (nlmsg_hdr(message)->nlmsg_type) {
    case RTM_NEWLINK:
    case RTM_DELLINK:
      changes->links = true;
      break;
    default:
      changes->addresses = true;
  }
  return NL_OK;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HostAddressMonitor>> HostAddressMonitor::Start(
    std::function<void()> on_addresses, std::function<void()> on_links) {
  std::unique_ptr<HostAddressMonitor> monitor(
      new HostAddressMonitor(std::move(on_addresses), std::move(on_links)));
  monitor->socket_ = nl_socket_alloc();
  if (monitor->socket_ == nullptr) return absl::ResourceExhaustedError("allocating a netlink socket");
  // Notifications are not replies to our requests: no sequence checks.
  nl_socket_disable_seq_check(monitor->socket_);
  if (int err = nl_connect(monitor->socket_, NETLINK_ROUTE); err < 0) {
    nl_socket_free(monitor->socket_);
    monitor->socket_ = nullptr;
    return absl::InternalError(absl::StrCat("connecting to rtnetlink: ", nl_geterror(err)));
  }
  int err = 0;
  if (monitor->on_addresses_) {
    err = nl_socket_add_memberships(monitor->socket_, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, 0);
  }
  if (err >= 0 && monitor->on_links_) {
    err = nl_socket_add_memberships(monitor->socket_, RTNLGRP_LINK, 0);
  }
  if (err < 0) {
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
  Changes changes;
  nl_socket_modify_cb(socket_, NL_CB_VALID, NL_CB_CUSTOM, &OnMessage, &changes);
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
        changes = {true, true};
        continue;
      }
      if (err < 0) {
        spdlog::warn("watching host addresses: {}", nl_geterror(err));
        changes = {true, true};
        break;
      }
    }
    if (changes.addresses && on_addresses_) on_addresses_();
    if (changes.links && on_links_) on_links_();
    changes = {};
  }
}

}  // namespace ebpfcni::datapath
