// Runs the real ebpf-cni binary on every case of cni/testdata/bad_input.json
// and checks that stdout is exactly one spec error JSON object with the
// expected code (and exit status 1), or a success for code 0. Guards the
// promise that every error path prints spec JSON, including the ones that
// happen before the config is parsed.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

extern char** environ;

namespace {

struct ProcessResult {
  int exit_status = -1;
  std::string stdout_text;
  std::string stderr_text;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Runs binary with exactly env (plus PATH), stdin from a file; kills it after
// a bounded time so a hang fails the test instead of blocking CI.
ProcessResult RunBinary(const std::string& binary, const std::map<std::string, std::string>& env,
                        const std::string& stdin_text, const std::string& work_dir) {
  const std::string in_path = work_dir + "/stdin";
  const std::string out_path = work_dir + "/stdout";
  const std::string err_path = work_dir + "/stderr";
  std::ofstream(in_path) << stdin_text;

  std::vector<std::string> env_strings = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::string binary_copy = binary;
  char* argv[] = {binary_copy.data(), nullptr};

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  int spawn_error = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ProcessResult result;
  if (spawn_error != 0) {
    ADD_FAILURE() << "cannot run " << binary << ": " << strerror(spawn_error);
    return result;
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int status = 0;
  while (true) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "ebpf-cni did not finish within 20 s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.stdout_text = ReadFile(out_path);
  result.stderr_text = ReadFile(err_path);
  return result;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/cnicore-badinput-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    run_dir_ = dir_ + "/no-services";  // never created: every service call fails fast
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  std::string run_dir_;
};

std::string Substitute(std::string text, const std::string& run_dir) {
  const std::string placeholder = "@RUNDIR@";
  for (size_t at = text.find(placeholder); at != std::string::npos; at = text.find(placeholder)) {
    text.replace(at, placeholder.size(), run_dir);
  }
  return text;
}

TEST_F(BadInputTest, EveryCaseGetsSpecErrorJsonWithTheRightCode) {
  nlohmann::json matrix = nlohmann::json::parse(ReadFile(EBPF_CNI_TESTDATA "/bad_input.json"));
  ASSERT_GT(matrix["cases"].size(), 30u);
  for (const nlohmann::json& test_case : matrix["cases"]) {
    const std::string name = test_case["name"];
    SCOPED_TRACE(name);
    std::map<std::string, std::string> env;
    for (const auto& [key, value] : test_case["env"].items()) env[key] = value.get<std::string>();

    std::string stdin_text;
    if (test_case.contains("stdin_json")) {
      nlohmann::json config = test_case["stdin_json"];
      // Keep logs in the test directory rather than /var/log.
      if (config.is_object() && !config.contains("logFile")) config["logFile"] = dir_ + "/cni.log";
      stdin_text = Substitute(config.dump(), run_dir_);
    } else {
      stdin_text = test_case["stdin"];
    }

    ProcessResult result = RunBinary(EBPF_CNI_BINARY, env, stdin_text, dir_);
    const int expected_code = test_case["code"];
    if (expected_code == 0) {
      EXPECT_EQ(result.exit_status, 0) << result.stdout_text << result.stderr_text;
      continue;
    }
    EXPECT_EQ(result.exit_status, 1) << result.stderr_text;
    // Exactly one JSON document, one line, nothing else on stdout.
    ASSERT_FALSE(result.stdout_text.empty()) << "stderr: " << result.stderr_text;
    EXPECT_EQ(result.stdout_text.find('\n'), result.stdout_text.size() - 1) << result.stdout_text;
    nlohmann::json error = nlohmann::json::parse(result.stdout_text, nullptr, false);
    ASSERT_TRUE(error.is_object()) << result.stdout_text;
    EXPECT_EQ(error.value("code", -1), expected_code) << result.stdout_text;
    ASSERT_TRUE(error.contains("msg") && error["msg"].is_string()) << result.stdout_text;
    EXPECT_FALSE(error["msg"].get<std::string>().empty());
    ASSERT_TRUE(error.contains("cniVersion") && error["cniVersion"].is_string()) << result.stdout_text;
  }
}

}  // namespace
