#include "cni/plugin/plugin.h"

#include <optional>

#include <absl/strings/str_cat.h>
#include <spdlog/spdlog.h>

#include "cni/plugin/commands/commands.h"
#include "cni/plugin/errors.h"
#include "cni/plugin/version.h"

namespace ebpfcni::cni {
namespace {

int PrintError(std::ostream& out, const absl::Status& status, absl::string_view cni_version) {
  CniError error = ToCniError(status);
  spdlog::error("error {}: {}{}{}", error.code, error.msg, error.details.empty() ? "" : " — ", error.details);
  out << EncodeError(error, cni_version).dump() << "\n";
  out.flush();
  return 1;
}

// Minimum spec version that defines each command (SPEC.md; CHECK came in
// 0.4.0, STATUS and GC in 1.1.0). Like the reference plugins we refuse a
// command the config's version does not know, with code 1.
absl::string_view MinimumVersion(Command command) {
  switch (command) {
    case Command::kCheck: return "0.4.0";
    case Command::kStatus:
    case Command::kGc: return "1.1.0";
    default: return "0.3.0";
  }
}

// Commands that print nothing on success.
int Answer(std::ostream& out, const absl::Status& status, absl::string_view cni_version) {
  if (!status.ok()) return PrintError(out, status, cni_version);
  return 0;
}

}  // namespace

int RunPlugin(const EnvLookup& env_lookup, absl::string_view stdin_text, std::ostream& out,
              const PluginHooks& hooks) {
  absl::StatusOr<CniEnvironment> env = ParseEnvironment(env_lookup);
  if (!env.ok()) return PrintError(out, env.status(), CniVersionForErrors(stdin_text));

  if (env->command == Command::kVersion) {
    // stdin may hold {"cniVersion": ...} or nothing; the answer is the same.
    out << VersionInfo().dump() << "\n";
    out.flush();
    return 0;
  }

  absl::StatusOr<NetworkConfig> config = ParseNetworkConfig(stdin_text);
  if (!config.ok()) return PrintError(out, config.status(), CniVersionForErrors(stdin_text));
  if (hooks.on_config) hooks.on_config(*config);
  spdlog::info("{} container={} ifname={} netns={} network={}", std::string(CommandName(env->command)), env->container_id,
               env->ifname, env->netns, config->name);

  if (absl::string_view minimum = MinimumVersion(env->command); !CniVersionAtLeast(config->cni_version, minimum)) {
    return PrintError(out,
                      CniStatus(code::kIncompatibleVersion,
                                absl::StrCat("config version ", config->cni_version, " does not allow ",
                                             CommandName(env->command), " (needs cniVersion >= ", minimum, ")")),
                      config->cni_version);
  }
  if (hooks.network == nullptr) {
    return PrintError(out, absl::InternalError("no network layer configured"), config->cni_version);
  }

  IpamClient ipam(config->ipam_socket, config->timeout);
  DatapathClient datapath(config->datapath_socket, config->timeout);
  IdentityClient identity(config->identity_socket, config->timeout);
  std::optional<PolicyClient> policy;
  if (!config->policy_socket.empty()) policy.emplace(config->policy_socket, config->timeout);
  CommandContext context{*env, *config, ipam, datapath, identity, *hooks.network, policy ? &*policy : nullptr};

  int exit_code = 0;
  switch (env->command) {
    case Command::kAdd: {
      absl::StatusOr<CniResult> result = RunAdd(context);
      if (result.ok()) {
        out << EncodeResult(*result, config->cni_version).dump() << "\n";
        out.flush();
      } else {
        exit_code = PrintError(out, result.status(), config->cni_version);
      }
      break;
    }
    case Command::kDel: exit_code = Answer(out, RunDel(context), config->cni_version); break;
    case Command::kCheck: exit_code = Answer(out, RunCheck(context), config->cni_version); break;
    case Command::kGc: exit_code = Answer(out, RunGc(context), config->cni_version); break;
    case Command::kStatus: exit_code = Answer(out, RunStatus(context), config->cni_version); break;
    case Command::kVersion: break;  // handled above
  }
  if (hooks.on_answered) hooks.on_answered(exit_code);
  return exit_code;
}

}  // namespace ebpfcni::cni
