#include "services/policy/clusterstate/manifest_directory_source.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <absl/strings/str_cat.h>
#include <absl/strings/str_replace.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/policy/clusterstate/testing/recording_listener.h"
#include "services/policy/clusterstate/testing/scoped_test_directory.h"

namespace ebpfcni::policy {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::HasSubstr;
using testing::NamespaceKey;
using testing::PodKey;
using testing::PolicyKey;
using testing::RecordingListener;

std::string NamespaceYaml(const std::string& name, const std::string& team = "a") {
  return absl::StrCat("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ", name, "\n  labels:\n    team: ", team,
                      "\n");
}
std::string PodYaml(const std::string& ns, const std::string& name, const std::string& app) {
  return absl::StrCat("apiVersion: v1\nkind: Pod\nmetadata:\n  name: ", name, "\n  namespace: ", ns,
                      "\n  labels:\n    app: ", app, "\nspec:\n  containers:\n  - name: c\n    ports:\n"
                      "    - containerPort: 80\n      name: http\n");
}
std::string PolicyYaml(const std::string& ns, const std::string& name, int port) {
  return absl::StrCat("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: ", name,
                      "\n  namespace: ", ns, "\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: ", port,
                      "\n");
}

class ManifestDirectorySourceTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (source_) source_->Stop();
  }

  void Write(const std::string& name, const std::string& content) {
    std::ofstream out(dir_ / name, std::ios::trunc);
    out << content;
  }
  // What editors do: write a temporary file, then rename it over the target.
  void WriteByRename(const std::string& name, const std::string& content) {
    Write("." + name + ".tmp", content);
    fs::rename(dir_ / ("." + name + ".tmp"), dir_ / name);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  void StartSource() {
    absl::StatusOr<std::unique_ptr<ClusterStateSource>> source = NewManifestDirectorySource(dir_.string());
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = *std::move(source);
    ASSERT_TRUE(source_->Start(&listener_).ok());
    ASSERT_TRUE(listener_.WaitSynced());
  }

  // Waits (bounded) until Status() satisfies `condition`.
  bool WaitStatus(const std::function<bool(const ClusterStateStatus&)>& condition) {
    for (int i = 0; i < 500; ++i) {
      if (condition(source_->Status())) return true;
      usleep(10'000);
    }
    return false;
  }

  testing::ScopedTestDirectory scoped_dir_;  // test-unique, removed even when the test fails
  const fs::path dir_ = scoped_dir_.path();
  RecordingListener listener_;
  std::unique_ptr<ClusterStateSource> source_;
};

TEST_F(ManifestDirectorySourceTest, MissingDirectoryIsAClearError) {
  absl::StatusOr<std::unique_ptr<ClusterStateSource>> missing = NewManifestDirectorySource(Path("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(Path("nope")));
  EXPECT_FALSE(fs::exists(Path("nope")));  // not created behind the user's back

  Write("file.yaml", "");
  absl::StatusOr<std::unique_ptr<ClusterStateSource>> not_dir = NewManifestDirectorySource(Path("file.yaml"));
  ASSERT_FALSE(not_dir.ok());
  EXPECT_EQ(not_dir.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ManifestDirectorySourceTest, InitialScanDeliversEveryFileThenSynced) {
  Write("ns.yaml", NamespaceYaml("x") + "---\n" + NamespaceYaml("y"));
  Write("pods.yml", PodYaml("x", "a", "web"));
  Write("policy.json", R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
    "metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":80}]}]}})");
  Write("README.md", "not a manifest");
  Write(".hidden.yaml", NamespaceYaml("hidden"));
  StartSource();

  auto objects = listener_.objects();
  EXPECT_EQ(objects.size(), 4u);
  EXPECT_TRUE(objects.contains(NamespaceKey("x")));
  EXPECT_TRUE(objects.contains(NamespaceKey("y")));
  EXPECT_TRUE(objects.contains(PodKey("x", "a")));
  ASSERT_TRUE(objects.contains(PolicyKey("x", "p")));
  EXPECT_TRUE(objects[PolicyKey("x", "p")]["spec"]["ingress"][0]["ports"][0]["port"].is_number_integer());
  EXPECT_EQ(listener_.synced_count(), 1);
  // One batch per file.
  EXPECT_EQ(listener_.batch_count(), 3u);
  bool found_origin = false;
  for (const auto& batch : listener_.batches()) {
    for (const ResourceEvent& event : batch) {
      if (event.name == "y") {
        EXPECT_EQ(event.origin, Path("ns.yaml") + ":8");
        found_origin = true;
      }
    }
  }
  EXPECT_TRUE(found_origin);
  ClusterStateStatus status = source_->Status();
  EXPECT_TRUE(status.synced);
  EXPECT_EQ(status.description, "manifests " + dir_.string());
  EXPECT_EQ(status.namespaces, 2u);
  EXPECT_EQ(status.pods, 1u);
  EXPECT_EQ(status.network_policies, 1u);
  EXPECT_TRUE(status.errors.empty());
}

TEST_F(ManifestDirectorySourceTest, CreateModifyDeleteAreFollowed) {
  StartSource();
  EXPECT_EQ(listener_.batch_count(), 0u);

  Write("a.yaml", PolicyYaml("x", "p", 80));
  ASSERT_TRUE(listener_.WaitObject(PolicyKey("x", "p")));

  Write("a.yaml", PolicyYaml("x", "p", 81));
  ASSERT_TRUE(listener_.WaitObject(PolicyKey("x", "p"), [](const nlohmann::json& p) {
    return p["spec"]["ingress"][0]["ports"][0]["port"] == 81;
  }));

  fs::remove(dir_ / "a.yaml");
  ASSERT_TRUE(listener_.WaitGone(PolicyKey("x", "p")));
  auto batches = listener_.batches();
  ASSERT_FALSE(batches.empty());
  ASSERT_EQ(batches.back().size(), 1u);
  EXPECT_EQ(batches.back()[0].type, ResourceEvent::Type::kDelete);
  EXPECT_EQ(listener_.empty_batches(), 0);
  EXPECT_EQ(listener_.calls_from_other_threads(), 0);
}

TEST_F(ManifestDirectorySourceTest, RenameIntoPlaceAndOut) {
  StartSource();
  WriteByRename("a.yaml", NamespaceYaml("x", "a"));
  ASSERT_TRUE(listener_.WaitObject(NamespaceKey("x")));
  WriteByRename("a.yaml", NamespaceYaml("x", "b"));
  ASSERT_TRUE(listener_.WaitObject(NamespaceKey("x"), [](const nlohmann::json& ns) {
    return ns["metadata"]["labels"]["team"] == "b";
  }));
  // Renamed out of the directory (e.g. to a backup): its objects are gone.
  fs::path elsewhere = dir_.string() + "-backup.yaml";
  fs::rename(dir_ / "a.yaml", elsewhere);
  fs::remove(elsewhere);
  ASSERT_TRUE(listener_.WaitGone(NamespaceKey("x")));
  // Renamed to a name that is not a manifest: gone too.
  Write("b.yaml", NamespaceYaml("y"));
  ASSERT_TRUE(listener_.WaitObject(NamespaceKey("y")));
  fs::rename(dir_ / "b.yaml", dir_ / "b.yaml.disabled");
  ASSERT_TRUE(listener_.WaitGone(NamespaceKey("y")));
}

TEST_F(ManifestDirectorySourceTest, SymlinkedManifestIsFollowed) {
  StartSource();
  const fs::path target = dir_.string() + "-target.yaml";
  std::ofstream(target) << NamespaceYaml("linked");
  fs::create_symlink(target, dir_ / "linked.yaml");
  bool appeared = listener_.WaitObject(NamespaceKey("linked"));
  fs::remove(target);
  ASSERT_TRUE(appeared);
}

TEST_F(ManifestDirectorySourceTest, DirectoryRemovedKeepsObjectsUntilItComesBack) {
  Write("a.yaml", NamespaceYaml("x"));
  Write("b.yaml", NamespaceYaml("y"));
  StartSource();
  size_t batches = listener_.batch_count();
  fs::remove_all(dir_);
  ASSERT_TRUE(WaitStatus([&](const ClusterStateStatus& s) {
    return s.errors.size() == 1 && s.errors[0].find("removed or renamed") != std::string::npos;
  })) << ::testing::PrintToString(source_->Status().errors);
  // Past the debounce, when the files' own deletions would have been applied.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(listener_.batch_count(), batches);  // nothing withdrawn
  EXPECT_EQ(source_->Status().namespaces, 2u);

  // Back (e.g. a deploy tool replaced it) with one file changed and one gone.
  fs::create_directories(dir_);
  Write("a.yaml", NamespaceYaml("x", "new"));
  ASSERT_TRUE(listener_.WaitObject(NamespaceKey("x"), [](const nlohmann::json& ns) {
    return ns["metadata"]["labels"]["team"] == "new";
  }));
  ASSERT_TRUE(listener_.WaitGone(NamespaceKey("y")));
  EXPECT_TRUE(WaitStatus([](const ClusterStateStatus& s) { return s.errors.empty(); }));
  // Watched again.
  Write("c.yaml", NamespaceYaml("z"));
  EXPECT_TRUE(listener_.WaitObject(NamespaceKey("z")));
}

TEST_F(ManifestDirectorySourceTest, OneReloadIsOneBatchOfDifferences) {
  Write("a.yaml", NamespaceYaml("keep") + "---\n" + NamespaceYaml("change") + "---\n" + NamespaceYaml("remove"));
  StartSource();
  size_t before = listener_.batch_count();
  Write("a.yaml", NamespaceYaml("keep") + "---\n" + NamespaceYaml("change", "b") + "---\n" + NamespaceYaml("add"));
  ASSERT_TRUE(listener_.WaitObject(NamespaceKey("add")));
  ASSERT_TRUE(listener_.WaitGone(NamespaceKey("remove")));
  auto batches = listener_.batches();
  ASSERT_EQ(batches.size(), before + 1);
  const std::vector<ResourceEvent>& batch = batches.back();
  ASSERT_EQ(batch.size(), 3u);  // "keep" is unchanged: not in the batch
  std::map<std::string, ResourceEvent::Type> by_name;
  for (const ResourceEvent& event : batch) by_name[event.name] = event.type;
  EXPECT_EQ(by_name["remove"], ResourceEvent::Type::kDelete);
  EXPECT_EQ(by_name["change"], ResourceEvent::Type::kUpsert);
  EXPECT_EQ(by_name["add"], ResourceEvent::Type::kUpsert);
  EXPECT_FALSE(by_name.contains("keep"));
}

TEST_F(ManifestDirectorySourceTest, BadFileKeepsItsObjectsAndOthersKeepWorking) {
  Write("good.yaml", PolicyYaml("x", "other", 80));
  Write("edit.yaml", PolicyYaml("x", "p", 80));
  StartSource();
  ASSERT_TRUE(listener_.WaitObject(PolicyKey("x", "p")));
  size_t batches_before = listener_.batch_count();

  // A syntax error on line 4.
  Write("edit.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: [p\n");
  ASSERT_TRUE(WaitStatus([](const ClusterStateStatus& s) { return !s.errors.empty(); }));
  ClusterStateStatus status = source_->Status();
  ASSERT_EQ(status.errors.size(), 1u);
  EXPECT_THAT(status.errors[0], HasSubstr(Path("edit.yaml") + ":"));
  EXPECT_THAT(status.errors[0], HasSubstr("invalid YAML"));
  int line = std::stoi(status.errors[0].substr(Path("edit.yaml").size() + 1));
  EXPECT_GE(line, 4);
  EXPECT_LE(line, 5);
  EXPECT_EQ(status.network_policies, 2u);
  EXPECT_EQ(listener_.batch_count(), batches_before);  // nothing withdrawn
  EXPECT_TRUE(listener_.objects().contains(PolicyKey("x", "p")));

  // The other file still reloads.
  Write("good.yaml", PolicyYaml("x", "other", 90));
  ASSERT_TRUE(listener_.WaitObject(PolicyKey("x", "other"), [](const nlohmann::json& p) {
    return p["spec"]["ingress"][0]["ports"][0]["port"] == 90;
  }));
  EXPECT_TRUE(listener_.objects().contains(PolicyKey("x", "p")));

  // A semantic error (no metadata.name) is reported the same way.
  Write("edit.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {}\n");
  ASSERT_TRUE(WaitStatus([&](const ClusterStateStatus& s) {
    return s.errors.size() == 1 && s.errors[0] == Path("edit.yaml") + ":1: Namespace has no metadata.name";
  })) << ::testing::PrintToString(source_->Status().errors);
  EXPECT_TRUE(listener_.objects().contains(PolicyKey("x", "p")));

  // Fixed: the error goes away and the new content replaces the old.
  Write("edit.yaml", PolicyYaml("x", "p", 443));
  ASSERT_TRUE(listener_.WaitObject(PolicyKey("x", "p"), [](const nlohmann::json& p) {
    return p["spec"]["ingress"][0]["ports"][0]["port"] == 443;
  }));
  EXPECT_TRUE(source_->Status().errors.empty());
}

TEST_F(ManifestDirectorySourceTest, DeletingABadFileDropsItsLastGoodObjects) {
  Write("a.yaml", NamespaceYaml("x"));
  StartSource();
  Write("a.yaml", "kind: [\n");
  ASSERT_TRUE(WaitStatus([](const ClusterStateStatus& s) { return !s.errors.empty(); }));
  fs::remove(dir_ / "a.yaml");
  ASSERT_TRUE(listener_.WaitGone(NamespaceKey("x")));
  EXPECT_TRUE(WaitStatus([](const ClusterStateStatus& s) { return s.errors.empty(); }));
}

TEST_F(ManifestDirectorySourceTest, SameObjectInTwoFilesStaysWithTheFirst) {
  Write("a.yaml", NamespaceYaml("x", "from-a"));
  StartSource();
  Write("b.yaml", NamespaceYaml("x", "from-b"));
  ASSERT_TRUE(WaitStatus([](const ClusterStateStatus& s) { return !s.errors.empty(); }));
  ClusterStateStatus status = source_->Status();
  ASSERT_EQ(status.errors.size(), 1u);
  EXPECT_EQ(status.errors[0], Path("b.yaml") + ":1: Namespace x is already defined in " + Path("a.yaml") +
                                  ":1; this copy is ignored");
  EXPECT_EQ(listener_.objects()[NamespaceKey("x")]["metadata"]["labels"]["team"], "from-a");
  EXPECT_EQ(status.namespaces, 1u);

  // The first file lets go of it: the second one's copy takes over, as an
  // update rather than a delete.
  size_t before = listener_.batch_count();
  Write("a.yaml", "");
  ASSERT_TRUE(listener_.WaitObject(NamespaceKey("x"), [](const nlohmann::json& ns) {
    return ns["metadata"]["labels"]["team"] == "from-b";
  }));
  auto batches = listener_.batches();
  ASSERT_EQ(batches.size(), before + 1);
  ASSERT_EQ(batches.back().size(), 1u);
  EXPECT_EQ(batches.back()[0].type, ResourceEvent::Type::kUpsert);
  EXPECT_EQ(batches.back()[0].origin, Path("b.yaml") + ":1");
  EXPECT_TRUE(WaitStatus([](const ClusterStateStatus& s) { return s.errors.empty(); }));
}

TEST_F(ManifestDirectorySourceTest, ListKindInAFile) {
  StartSource();
  Write("list.yaml", "apiVersion: v1\nkind: List\nitems:\n- " +
                         absl::StrReplaceAll(NamespaceYaml("a"), {{"\n", "\n  "}}) + "\n- " +
                         absl::StrReplaceAll(PodYaml("a", "p", "web"), {{"\n", "\n  "}}) + "\n");
  ASSERT_TRUE(listener_.WaitObject(PodKey("a", "p")));
  EXPECT_TRUE(listener_.objects().contains(NamespaceKey("a")));
}

TEST_F(ManifestDirectorySourceTest, UnknownKindIsAWarning) {
  Write("mixed.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n" + NamespaceYaml("x"));
  StartSource();
  EXPECT_TRUE(listener_.objects().contains(NamespaceKey("x")));
  ClusterStateStatus status = source_->Status();
  EXPECT_TRUE(status.errors.empty());
  EXPECT_THAT(status.warnings, Contains(HasSubstr(Path("mixed.yaml") + ":1: kind Deployment")));
}

// Kubernetes ConfigMap volumes: files are symlinks through "..data", which is
// swapped atomically by renaming a new symlink over it.
TEST_F(ManifestDirectorySourceTest, ConfigMapVolumeSwapIsFollowed) {
  fs::create_directories(dir_ / "..v1");
  std::ofstream(dir_ / "..v1" / "ns.yaml") << NamespaceYaml("x", "v1");
  fs::create_directory_symlink("..v1", dir_ / "..data");
  fs::create_symlink("..data/ns.yaml", dir_ / "ns.yaml");
  StartSource();
  ASSERT_TRUE(listener_.WaitObject(NamespaceKey("x")));

  fs::create_directories(dir_ / "..v2");
  std::ofstream(dir_ / "..v2" / "ns.yaml") << NamespaceYaml("x", "v2");
  fs::create_directory_symlink("..v2", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");
  ASSERT_TRUE(listener_.WaitObject(NamespaceKey("x"), [](const nlohmann::json& ns) {
    return ns["metadata"]["labels"]["team"] == "v2";
  }));
}

TEST_F(ManifestDirectorySourceTest, BurstOfWritesEndsInTheLastContent) {
  StartSource();
  for (int i = 0; i < 50; ++i) Write("a.yaml", PolicyYaml("x", "p", 1000 + i));
  ASSERT_TRUE(listener_.WaitObject(PolicyKey("x", "p"), [](const nlohmann::json& p) {
    return p["spec"]["ingress"][0]["ports"][0]["port"] == 1049;
  }));
  // Debounced: far fewer reloads than writes.
  EXPECT_LT(listener_.batch_count(), 25u);
}

TEST_F(ManifestDirectorySourceTest, StopIsPromptAndIdempotent) {
  StartSource();
  auto start = std::chrono::steady_clock::now();
  source_->Stop();
  source_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  // Nothing delivered after Stop.
  size_t batches = listener_.batch_count();
  Write("a.yaml", NamespaceYaml("late"));
  usleep(100'000);
  EXPECT_EQ(listener_.batch_count(), batches);
}

}  // namespace
}  // namespace ebpfcni::policy
