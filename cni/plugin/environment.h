#pragma once
// The CNI_* environment variables a runtime passes to the plugin, validated
// per command as SPEC.md requires (code 4 for anything missing or malformed).
#include <functional>
#include <optional>
#include <string>
#include <absl/strings/string_view.h>

#include <absl/status/statusor.h>

namespace ebpfcni::cni {

enum class Command { kAdd, kDel, kCheck, kVersion, kStatus, kGc };

absl::string_view CommandName(Command command);

struct CniEnvironment {
  Command command = Command::kVersion;
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS
  std::string ifname;        // CNI_IFNAME
  std::string args;          // CNI_ARGS (raw; see cni_args.h)
  std::string path;          // CNI_PATH
};

// Looks a variable up; nullopt when unset. Injected so tests need not touch
// the process environment.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
EnvLookup ProcessEnvLookup();

// Reads and validates the environment for the command named by CNI_COMMAND:
// ADD/CHECK need CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME; DEL needs
// CNI_CONTAINERID and CNI_IFNAME (CNI_NETNS may be empty); VERSION, STATUS
// and GC need nothing. Errors carry CNI code 4.
absl::StatusOr<CniEnvironment> ParseEnvironment(const EnvLookup& lookup);

// SPEC.md: starts with an alphanumeric, then alphanumerics, '_', '.', '-'.
bool IsValidContainerId(absl::string_view id);
// SPEC.md: 1..15 chars, not "." or "..", no '/', ':' or whitespace.
bool IsValidInterfaceName(absl::string_view name);

}  // namespace ebpfcni::cni
