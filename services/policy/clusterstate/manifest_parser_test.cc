#include "services/policy/clusterstate/manifest_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ebpfcni::policy {
namespace {

using ::testing::HasSubstr;

constexpr char kThreeKinds[] = R"(# a comment
apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels:
    team: a
---
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels: {app: web}
spec:
  containers:
  - name: c
    image: nginx
    ports:
    - name: http
      containerPort: 80
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-web
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports:
    - port: 80
    - port: "http"
      protocol: UDP
      endPort: null
)";

TEST(ManifestParserTest, ParsesEveryKindWithLinesAndDefaultNamespace) {
  ManifestParseResult result = ParseManifest(kThreeKinds, /*json=*/false);
  ASSERT_TRUE(result.ok) << result.error_line << ": " << result.error;
  ASSERT_EQ(result.objects.size(), 3u);

  EXPECT_EQ(result.objects[0].kind, ResourceKind::kNamespace);
  EXPECT_EQ(result.objects[0].namespace_name, "");
  EXPECT_EQ(result.objects[0].name, "x");
  EXPECT_EQ(result.objects[0].line, 2);

  EXPECT_EQ(result.objects[1].kind, ResourceKind::kPod);
  EXPECT_EQ(result.objects[1].namespace_name, "x");
  EXPECT_EQ(result.objects[1].line, 9);
  EXPECT_EQ(result.objects[1].object["spec"]["containers"][0]["ports"][0]["containerPort"], 80);

  const ManifestObject& policy = result.objects[2];
  EXPECT_EQ(policy.kind, ResourceKind::kNetworkPolicy);
  EXPECT_EQ(policy.namespace_name, "default");  // kubectl's default without -n
  EXPECT_EQ(policy.object["metadata"]["namespace"], "default");
  EXPECT_EQ(policy.line, 23);
  const nlohmann::json& ports = policy.object["spec"]["ingress"][0]["ports"];
  EXPECT_TRUE(ports[0]["port"].is_number_integer());
  EXPECT_TRUE(ports[1]["port"].is_string());
  EXPECT_TRUE(ports[1]["endPort"].is_null());
  EXPECT_EQ(policy.object["apiVersion"], "networking.k8s.io/v1");
}

TEST(ManifestParserTest, SyntaxErrorHasItsLine) {
  ManifestParseResult result = ParseManifest("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [a\n  x: y\n", false);
  ASSERT_FALSE(result.ok);
  EXPECT_GE(result.error_line, 4);
  EXPECT_LE(result.error_line, 6);
  EXPECT_THAT(result.error, HasSubstr("invalid YAML"));
  EXPECT_TRUE(result.objects.empty());
}

TEST(ManifestParserTest, MissingKindOrNameRejectsTheFile) {
  ManifestParseResult no_kind = ParseManifest(
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\napiVersion: v1\nmetadata:\n  name: a\n", false);
  ASSERT_FALSE(no_kind.ok);
  EXPECT_EQ(no_kind.error_line, 5);
  EXPECT_THAT(no_kind.error, HasSubstr("no kind"));
  EXPECT_TRUE(no_kind.objects.empty());

  ManifestParseResult no_name = ParseManifest("apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {a: b}\n", false);
  ASSERT_FALSE(no_name.ok);
  EXPECT_EQ(no_name.error_line, 1);
  EXPECT_THAT(no_name.error, HasSubstr("metadata.name"));

  ManifestParseResult wrong_api = ParseManifest("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\n"
                                                "metadata: {name: p}\n", false);
  ASSERT_FALSE(wrong_api.ok);
  EXPECT_THAT(wrong_api.error, HasSubstr("networking.k8s.io/v1"));
}

TEST(ManifestParserTest, UnknownKindsAreWarningsNotErrors) {
  ManifestParseResult result = ParseManifest(
      "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n",
      false);
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_EQ(result.objects.size(), 1u);
  EXPECT_EQ(result.objects[0].name, "y");
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_EQ(result.warnings[0].first, 1);
  EXPECT_THAT(result.warnings[0].second, HasSubstr("Service"));
}

TEST(ManifestParserTest, ListKindAndTypedListsExpandTheirItems) {
  ManifestParseResult result = ParseManifest(R"(apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a}
- apiVersion: v1
  kind: Namespace
  metadata: {name: b}
---
apiVersion: v1
kind: PodList
metadata: {resourceVersion: "7"}
items:
- metadata: {name: p, namespace: a}
)", false);
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_EQ(result.objects.size(), 3u);
  EXPECT_EQ(result.objects[0].name, "a");
  EXPECT_EQ(result.objects[0].line, 4);
  EXPECT_EQ(result.objects[1].name, "b");
  EXPECT_EQ(result.objects[1].line, 7);
  EXPECT_EQ(result.objects[2].kind, ResourceKind::kPod);
  EXPECT_EQ(result.objects[2].object["kind"], "Pod");  // typed lists' items get their kind back
  EXPECT_EQ(result.objects[2].object["apiVersion"], "v1");
  EXPECT_EQ(result.objects[2].line, 15);
}

TEST(ManifestParserTest, ListItemWithoutKindIsAnError) {
  ManifestParseResult result =
      ParseManifest("apiVersion: v1\nkind: List\nitems:\n- metadata: {name: a}\n", false);
  ASSERT_FALSE(result.ok);
  EXPECT_EQ(result.error_line, 4);
  EXPECT_THAT(result.error, HasSubstr("List item has no kind"));
}

TEST(ManifestParserTest, DuplicateInOneFileIsAnError) {
  ManifestParseResult result = ParseManifest(
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\n"
      "metadata: {name: a}\n", false);
  ASSERT_FALSE(result.ok);
  EXPECT_EQ(result.error_line, 5);
  EXPECT_THAT(result.error, HasSubstr("twice"));
}

TEST(ManifestParserTest, EmptyDocumentsAndFilesAreFine) {
  EXPECT_TRUE(ParseManifest("", false).ok);
  EXPECT_TRUE(ParseManifest("# nothing\n---\n---\n", false).ok);
  EXPECT_TRUE(ParseManifest("  \n", true).ok);
}

TEST(ManifestParserTest, Json) {
  ManifestParseResult result = ParseManifest(
      R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},
          "spec":{"containers":[{"name":"c","ports":[{"containerPort":8080,"name":"web"}]}]}})", true);
  ASSERT_TRUE(result.ok) << result.error;
  ASSERT_EQ(result.objects.size(), 1u);
  EXPECT_EQ(result.objects[0].object["spec"]["containers"][0]["ports"][0]["containerPort"], 8080);

  ManifestParseResult bad = ParseManifest("{\n\"kind\": \"Pod\",\n\"metadata\": {\n}}}\n", true);
  ASSERT_FALSE(bad.ok);
  EXPECT_EQ(bad.error_line, 4);
  EXPECT_THAT(bad.error, HasSubstr("invalid JSON"));
}

TEST(ManifestParserTest, NamespaceOnClusterScopedObjectIsDropped) {
  ManifestParseResult result =
      ParseManifest("apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n", false);
  ASSERT_TRUE(result.ok);
  EXPECT_FALSE(result.objects[0].object["metadata"].contains("namespace"));
}

}  // namespace
}  // namespace ebpfcni::policy
