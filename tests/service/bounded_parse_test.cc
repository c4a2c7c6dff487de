// ParsedBytesBound must bound what protobuf really allocates (checked with
// SpaceUsedLong on real and random messages) without the 8x of a blind
// guess on bulk bytes; ParseBounded reserves before it parses and refuses
// what does not fit; BoundedService registers every method of the service.
#include "server/service/bounded_parse.h"

#include <grpcpp/support/proto_buffer_writer.h>

#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "embedding/v1/embedding_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/core/table_registry.h"
#include "server/service/bounded_service.h"
#include "server/service/embedding_service_impl.h"

namespace embedding {
namespace {

grpc::ByteBuffer Raw(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer Serialized(const google::protobuf::Message& message) {
  return Raw(message.SerializeAsString());
}

int64_t Bound(const google::protobuf::Message& message) {
  absl::StatusOr<int64_t> bound =
      ParsedBytesBound(Serialized(message), *message.GetDescriptor());
  EXPECT_TRUE(bound.ok()) << bound.status();
  return bound.value_or(-1);
}

TEST(ParsedBytesBoundTest, OneByteIndicesAreBoundedAtTheirParsedSize) {
  v1::LookupRequest request;
  request.set_table("t");
  for (int i = 0; i < 100000; ++i) request.add_indices(i % 100);
  const std::string wire = request.SerializeAsString();
  v1::LookupRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  const int64_t bound = Bound(request);
  EXPECT_GE(bound, static_cast<int64_t>(parsed.SpaceUsedLong()));
  // Eight bytes per one-byte index once parsed, three times while growing.
  EXPECT_GE(bound, 8 * static_cast<int64_t>(wire.size()));
  EXPECT_LE(bound, 3 * 8 * 100000 + 4096);
}

TEST(ParsedBytesBoundTest, BulkBytesCostTheirSizeNotAMultiple) {
  v1::PushGradientsRequest request;
  request.set_table("t");
  request.add_indices(3);
  request.mutable_grad()->set_data(std::string(1 << 20, '\x7f'));
  request.mutable_grad()->add_shape(1);
  request.mutable_grad()->add_shape(1 << 18);
  const int64_t bound = Bound(request);
  v1::PushGradientsRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.SerializeAsString()));
  EXPECT_GE(bound, static_cast<int64_t>(parsed.SpaceUsedLong()));
  EXPECT_LE(bound, (1 << 20) + 4096);
}

TEST(ParsedBytesBoundTest, DeepShapeIsCountedPerElement) {
  v1::LookupRequest request;
  request.add_indices(0);
  for (int i = 0; i < 50000; ++i) request.add_shape(1);
  v1::LookupRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.SerializeAsString()));
  EXPECT_GE(Bound(request), static_cast<int64_t>(parsed.SpaceUsedLong()));
}

TEST(ParsedBytesBoundTest, MalformedBytesAreInvalidArgument) {
  for (const std::string& bytes :
       {std::string("\x0a\xff\xff\xff\xff\x0f", 6),  // Length past the end.
        std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11),
        std::string("\x00\x01", 2),   // Field number 0.
        std::string("\x0b\x0c", 2)})  // A group.
  {
    absl::StatusOr<int64_t> bound =
        ParsedBytesBound(Raw(bytes), *v1::LookupRequest::descriptor());
    EXPECT_EQ(bound.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bound.status().message().find("malformed embedding.v1."),
              std::string::npos)
        << bound.status();
  }
}

// Random bytes, and random mutations of real messages: whenever protobuf
// parses them and the scan accepts them, the bound holds.
TEST(ParsedBytesBoundTest, BoundHoldsOnRandomMessages) {
  std::mt19937_64 rng(20261127);
  v1::PushBagGradientsRequest seed;
  seed.set_table("table");
  for (int i = 0; i < 64; ++i) seed.add_indices(i * 1000);
  for (int i = 0; i < 8; ++i) seed.add_offsets(i);
  seed.mutable_grad()->set_data(std::string(256, 'x'));
  seed.set_client_id("client");
  const std::string base = seed.SerializeAsString();
  int parsed_count = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bytes = base;
    if (trial % 2 == 0) {
      bytes.resize(rng() % 64);
      for (char& c : bytes) c = static_cast<char>(rng());
    } else {
      for (int flips = 1 + rng() % 4; flips > 0; --flips) {
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
    }
    v1::PushBagGradientsRequest parsed;
    if (!parsed.ParseFromString(bytes)) continue;
    absl::StatusOr<int64_t> bound =
        ParsedBytesBound(Raw(bytes), *parsed.GetDescriptor());
    if (!bound.ok()) continue;  // Groups are refused though protobuf skips.
    ++parsed_count;
    ASSERT_GE(*bound, static_cast<int64_t>(parsed.SpaceUsedLong()))
        << "trial " << trial;
  }
  EXPECT_GT(parsed_count, 1000);
}

TEST(ParseBoundedTest, ReservesWhileHeldAndRefusesWhatDoesNotFit) {
  v1::LookupRequest request;
  for (int i = 0; i < 10000; ++i) request.add_indices(i);
  const grpc::ByteBuffer raw = Serialized(request);

  InflightMemory small(/*limit_bytes=*/1000);
  v1::LookupRequest refused;
  absl::StatusOr<InflightBytes> none = ParseBounded(raw, &refused, &small);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(none.status().message().find("--max_inflight_bytes"),
            std::string::npos);
  EXPECT_EQ(refused.indices_size(), 0);
  EXPECT_EQ(small.used(), 0);

  InflightMemory memory(/*limit_bytes=*/int64_t{1} << 30);
  v1::LookupRequest parsed;
  {
    absl::StatusOr<InflightBytes> held = ParseBounded(raw, &parsed, &memory);
    ASSERT_TRUE(held.ok()) << held.status();
    EXPECT_EQ(parsed.indices_size(), 10000);
    EXPECT_EQ(memory.used(),
              static_cast<int64_t>(parsed.SpaceUsedLong() + raw.Length()));
  }
  EXPECT_EQ(memory.used(), 0);
}

TEST(ParseBoundedTest, MalformedIsInvalidArgumentNamingTheType) {
  v1::LookupRequest parsed;
  absl::StatusOr<InflightBytes> held =
      ParseBounded(Raw("\x0a\x05\x01"), &parsed, nullptr);
  EXPECT_EQ(held.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(
      held.status().message().find("malformed embedding.v1.LookupRequest"),
      std::string::npos)
      << held.status();
}

TEST(BoundedServiceTest, RegistersEveryMethodOfTheService) {
  TableRegistry registry({});
  EmbeddingServiceImpl impl(&registry, ServiceOptions{});
  BoundedService service(&impl, nullptr);
  const google::protobuf::ServiceDescriptor& descriptor =
      *google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::EmbeddingService::service_full_name());
  ASSERT_EQ(static_cast<int>(service.method_paths().size()),
            descriptor.method_count());
  for (int i = 0; i < descriptor.method_count(); ++i) {
    EXPECT_EQ(service.method_paths()[i],
              absl::StrCat("/", descriptor.full_name(), "/",
                           descriptor.method(i)->name()));
  }
}

}  // namespace
}  // namespace embedding
