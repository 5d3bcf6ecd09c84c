#include "cni/plugin/environment.h"

#include <cctype>
#include <cstdlib>

#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>

#include "cni/plugin/errors.h"

namespace ebpfcni::cni {
namespace {

absl::StatusOr<Command> ParseCommand(absl::string_view text) {
  if (text == "ADD") return Command::kAdd;
  if (text == "DEL") return Command::kDel;
  if (text == "CHECK") return Command::kCheck;
  if (text == "VERSION") return Command::kVersion;
  if (text == "STATUS") return Command::kStatus;
  if (text == "GC") return Command::kGc;
  return CniStatus(code::kInvalidEnvironment,
                   absl::StrCat("unknown CNI_COMMAND \"", text,
                                "\"; expected ADD, DEL, CHECK, VERSION, STATUS or GC"));
}

}  // namespace

absl::string_view CommandName(Command command) {
  switch (command) {
    case Command::kAdd: return "ADD";
    case Command::kDel: return "DEL";
    case Command::kCheck: return "CHECK";
    case Command::kVersion: return "VERSION";
    case Command::kStatus: return "STATUS";
    case Command::kGc: return "GC";
  }
  return "UNKNOWN";
}

EnvLookup ProcessEnvLookup() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

bool IsValidContainerId(absl::string_view id) {
  if (id.empty() || !absl::ascii_isalnum(static_cast<unsigned char>(id[0]))) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

bool IsValidInterfaceName(absl::string_view name) {
  // IFNAMSIZ is 16 including the terminating NUL.
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == ':' || absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

absl::StatusOr<CniEnvironment> ParseEnvironment(const EnvLookup& lookup) {
  auto get = [&](const char* name) { return lookup(name).value_or(""); };
  std::string command_text = get("CNI_COMMAND");
  if (command_text.empty()) {
    return CniStatus(code::kInvalidEnvironment,
                     "CNI_COMMAND is not set; this binary is a CNI plugin and is run by a container "
                     "runtime (or cnitool) with CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS|GC");
  }
  absl::StatusOr<Command> command = ParseCommand(command_text);
  if (!command.ok()) return command.status();

  CniEnvironment env;
  env.command = *command;
  env.container_id = get("CNI_CONTAINERID");
  env.netns = get("CNI_NETNS");
  env.ifname = get("CNI_IFNAME");
  env.args = get("CNI_ARGS");
  env.path = get("CNI_PATH");

  const bool per_attachment =
      env.command == Command::kAdd || env.command == Command::kDel || env.command == Command::kCheck;
  if (!per_attachment) return env;

  if (env.container_id.empty()) {
    return CniStatus(code::kInvalidEnvironment,
                     absl::StrCat("CNI_CONTAINERID is required for ", CommandName(env.command)));
  }
  if (!IsValidContainerId(env.container_id)) {
    return CniStatus(code::kInvalidEnvironment,
                     absl::StrCat("CNI_CONTAINERID \"", env.container_id,
                                  "\" is invalid: it must start with a letter or digit and contain only "
                                  "letters, digits, '_', '.' and '-'"));
  }
  if (env.ifname.empty()) {
    return CniStatus(code::kInvalidEnvironment,
                     absl::StrCat("CNI_IFNAME is required for ", CommandName(env.command)));
  }
  if (!IsValidInterfaceName(env.ifname)) {
    return CniStatus(code::kInvalidEnvironment,
                     absl::StrCat("CNI_IFNAME \"", env.ifname,
                                  "\" is not a valid interface name: 1-15 printable characters, not "
                                  "\".\" or \"..\", without '/', ':' or whitespace"));
  }
  if (env.netns.empty() && env.command != Command::kDel) {
    return CniStatus(code::kInvalidEnvironment,
                     absl::StrCat("CNI_NETNS is required for ", CommandName(env.command)));
  }
  return env;
}

}  // namespace ebpfcni::cni
