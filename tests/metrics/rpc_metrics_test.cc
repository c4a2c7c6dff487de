#include "server/metrics/rpc_metrics.h"

#include <string>
#include <vector>

#include "embedding/v1/embedding_service.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/metrics/metric_testing.h"

namespace embedding {
namespace {

using ::testing::HasSubstr;

constexpr char kService[] = "embedding.v1.EmbeddingService";

std::vector<RpcMethod> EmbeddingMethods() {
  // Links the generated descriptors in (as the server's code does).
  EXPECT_NE(v1::LookupRequest::descriptor(), nullptr);
  absl::StatusOr<std::vector<RpcMethod>> methods =
      MethodsOfServices({std::string(kService)});
  EXPECT_TRUE(methods.ok()) << methods.status();
  return methods.ok() ? *methods : std::vector<RpcMethod>{};
}

LabelMap Labels(const std::string& method, const std::string& type) {
  return {
      {"grpc_service", kService}, {"grpc_method", method}, {"grpc_type", type}};
}

TEST(RpcMetricsTest, MethodsOfServicesReadsTypesFromTheDescriptor) {
  const std::vector<RpcMethod> methods = EmbeddingMethods();
  const auto type_of = [&](const std::string& name) {
    for (const RpcMethod& method : methods) {
      if (method.name == name) return std::string(RpcTypeLabel(method.type));
    }
    return std::string("missing");
  };
  EXPECT_EQ(type_of("Lookup"), "unary");
  EXPECT_EQ(type_of("ReadRows"), "server_stream");
  EXPECT_EQ(type_of("LookupStream"), "bidi_stream");
}

TEST(RpcMetricsTest, UnknownServiceIsNotFound) {
  const absl::StatusOr<std::vector<RpcMethod>> methods =
      MethodsOfServices({"no.such.Service"});
  EXPECT_EQ(methods.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(methods.status().message(), HasSubstr("no.such.Service"));
}

TEST(RpcMetricsTest, FindTakesFullPaths) {
  RpcMetrics metrics(EmbeddingMethods());
  EXPECT_GE(metrics.Find("/embedding.v1.EmbeddingService/Lookup"), 0);
  EXPECT_EQ(metrics.Find("/embedding.v1.EmbeddingService/Nope"), -1);
  EXPECT_EQ(metrics.Find("Lookup"), -1);
}

TEST(RpcMetricsTest, EveryMethodAndCodeIsExportedFromTheStart) {
  const std::vector<RpcMethod> methods = EmbeddingMethods();
  RpcMetrics metrics(methods);
  const auto families = metrics.Collect();
  for (const char* name :
       {"grpc_server_started_total", "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total", "grpc_server_handling_seconds"}) {
    const prometheus::MetricFamily* family = FindFamily(families, name);
    ASSERT_NE(family, nullptr) << name;
    EXPECT_FALSE(family->help.empty()) << name;
    EXPECT_EQ(family->metric.size(), methods.size()) << name;
  }
  const prometheus::MetricFamily* handled =
      FindFamily(families, "grpc_server_handled_total");
  ASSERT_NE(handled, nullptr);
  EXPECT_EQ(handled->type, prometheus::MetricType::Counter);
  EXPECT_EQ(handled->metric.size(), methods.size() * RpcMetrics::kStatusCodes);
  EXPECT_EQ(FindFamily(families, "grpc_server_handling_seconds")->type,
            prometheus::MetricType::Histogram);
  LabelMap unauthenticated = Labels("Lookup", "unary");
  unauthenticated["grpc_code"] = "UNAUTHENTICATED";
  EXPECT_EQ(ValueOf(families, "grpc_server_handled_total", unauthenticated), 0);
}

TEST(RpcMetricsTest, CountsLandOnTheirMethodAndCode) {
  RpcMetrics metrics(EmbeddingMethods());
  const int lookup = metrics.Find("/embedding.v1.EmbeddingService/Lookup");
  const int stream =
      metrics.Find("/embedding.v1.EmbeddingService/LookupStream");
  metrics.Started(lookup);
  metrics.Started(lookup);
  metrics.Received(lookup);
  metrics.Handled(lookup, /*code=*/0, 0.001);
  metrics.Handled(lookup, /*code=*/3, 0.5);
  metrics.Started(stream);
  for (int i = 0; i < 3; ++i) metrics.Received(stream);
  for (int i = 0; i < 2; ++i) metrics.Sent(stream);
  metrics.Handled(stream, /*code=*/99, 2);  // Not a code: UNKNOWN.

  const auto families = metrics.Collect();
  const LabelMap lookup_labels = Labels("Lookup", "unary");
  const LabelMap stream_labels = Labels("LookupStream", "bidi_stream");
  EXPECT_EQ(ValueOf(families, "grpc_server_started_total", lookup_labels), 2);
  EXPECT_EQ(ValueOf(families, "grpc_server_msg_received_total", lookup_labels),
            1);
  EXPECT_EQ(ValueOf(families, "grpc_server_msg_received_total", stream_labels),
            3);
  EXPECT_EQ(ValueOf(families, "grpc_server_msg_sent_total", stream_labels), 2);
  LabelMap with_code = lookup_labels;
  with_code["grpc_code"] = "OK";
  EXPECT_EQ(ValueOf(families, "grpc_server_handled_total", with_code), 1);
  with_code["grpc_code"] = "INVALID_ARGUMENT";
  EXPECT_EQ(ValueOf(families, "grpc_server_handled_total", with_code), 1);
  with_code = stream_labels;
  with_code["grpc_code"] = "UNKNOWN";
  EXPECT_EQ(ValueOf(families, "grpc_server_handled_total", with_code), 1);

  const auto seconds =
      FindSample(families, "grpc_server_handling_seconds", lookup_labels);
  ASSERT_TRUE(seconds.has_value());
  EXPECT_EQ(seconds->histogram.sample_count, 2u);
  EXPECT_DOUBLE_EQ(seconds->histogram.sample_sum, 0.501);
}

}  // namespace
}  // namespace embedding
