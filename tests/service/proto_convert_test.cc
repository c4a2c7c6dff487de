// The wire <-> engine conversions alone (no server): specs survive a round
// trip with every initializer and optimizer, defaults are filled in, and bad
// tensors, dtypes and bag modes are INVALID_ARGUMENT with exact messages.
#include "server/service/proto_convert.h"

#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

void ExpectSameOptimizer(const OptimizerSpec& got,
                         const OptimizerSpec& expected) {
  ASSERT_EQ(got.kind, expected.kind);
  for (const HyperParameter& param : InfoOf(expected.kind).params) {
    EXPECT_EQ(got.*param.field, expected.*param.field) << param.name;
  }
}

// Every field FromProto reads; the shard fields come from the server.
void ExpectSameSpec(const TableSpec& got, const TableSpec& expected) {
  EXPECT_EQ(got.name, expected.name);
  EXPECT_EQ(got.num_embeddings, expected.num_embeddings);
  EXPECT_EQ(got.embedding_dim, expected.embedding_dim);
  EXPECT_EQ(got.padding_idx, expected.padding_idx);
  EXPECT_EQ(got.max_norm, expected.max_norm);
  EXPECT_EQ(got.norm_type, expected.norm_type);
  EXPECT_EQ(got.scale_grad_by_freq, expected.scale_grad_by_freq);
  EXPECT_EQ(got.seed, expected.seed);
  EXPECT_EQ(got.initializer.kind, expected.initializer.kind);
  EXPECT_EQ(got.initializer.a, expected.initializer.a);
  EXPECT_EQ(got.initializer.b, expected.initializer.b);
  ExpectSameOptimizer(got.optimizer, expected.optimizer);
  EXPECT_EQ(got.dynamic, expected.dynamic);
}

TableSpec FullSpec() {
  TableSpec spec;
  spec.name = "t";
  spec.num_embeddings = 100;
  spec.embedding_dim = 8;
  spec.padding_idx = 3;
  spec.max_norm = 1.5f;
  spec.norm_type = std::numeric_limits<float>::infinity();
  spec.scale_grad_by_freq = true;
  spec.seed = 42;
  spec.shard_index = 1;
  spec.shard_count = 2;
  return spec;
}

// Engine -> proto -> engine.
TableSpec RoundTrip(const TableSpec& spec) {
  v1::TableInfo info;
  ToProto(TableStats{.spec = spec}, &info);
  return *FromProto(info.spec());
}

TEST(ProtoConvertTest, SpecRoundTripsWithEveryInitializer) {
  const InitializerSpec initializers[] = {
      {InitializerSpec::Kind::kNormal, 0.5f, 2.0f},
      {InitializerSpec::Kind::kUniform, -0.25f, 0.75f},
      {InitializerSpec::Kind::kConstant, 3.0f, 0.0f},
  };
  for (const InitializerSpec& initializer : initializers) {
    TableSpec spec = FullSpec();
    spec.initializer = initializer;
    SCOPED_TRACE(static_cast<int>(initializer.kind));
    ExpectSameSpec(RoundTrip(spec), spec);
  }
}

TEST(ProtoConvertTest, SpecRoundTripsWithEveryOptimizer) {
  for (const OptimizerInfo& info : AllOptimizers()) {
    SCOPED_TRACE(info.name);
    TableSpec spec = FullSpec();
    spec.optimizer = DefaultOptimizerSpec(info.kind);
    // Off the defaults, so that a dropped field cannot pass unseen.
    float value = 0.125f;
    for (const HyperParameter& param : info.params) {
      spec.optimizer.*param.field =
          param.range == ParamRange::kNonPositive ? -value : value;
      value += 0.0625f;
    }
    ExpectSameSpec(RoundTrip(spec), spec);
  }
}

TEST(ProtoConvertTest, DynamicSpecRoundTrips) {
  TableSpec spec = FullSpec();
  spec.num_embeddings = 0;
  spec.padding_idx = -7;
  for (const DynamicSpec& dynamic :
       {DynamicSpec{.capacity = 1000}, DynamicSpec{.capacity = int64_t{1} << 40,
                                       .admit_after = 3,
                                       .eviction = DynamicSpec::Eviction::kLfu,
                                       .ttl_pushes = 50}}) {
    spec.dynamic = dynamic;
    ExpectSameSpec(RoundTrip(spec), spec);
  }
  spec.dynamic.reset();
  EXPECT_FALSE(RoundTrip(spec).dynamic.has_value());
}

TEST(ProtoConvertTest, UnknownEvictionIsInvalidArgument) {
  v1::TableSpec proto;
  proto.mutable_dynamic()->set_eviction(
      static_cast<v1::DynamicTable::Eviction>(9));
  absl::Status status = FromProto(proto).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "unknown dynamic eviction 9");
}

TEST(ProtoConvertTest, ToProtoWritesShardFieldsAndStats) {
  v1::TableInfo info;
  ToProto(TableStats{.spec = FullSpec(),
                     .local_rows = 50,
                     .memory_bytes = 1600,
                     .version = 7,
                     .step = 5},
          &info);
  EXPECT_EQ(info.spec().shard_index(), 1);
  EXPECT_EQ(info.spec().shard_count(), 2);
  EXPECT_EQ(info.local_rows(), 50);
  EXPECT_EQ(info.memory_bytes(), 1600);
  EXPECT_EQ(info.version(), 7);
  EXPECT_EQ(info.step(), 5);
}

TEST(ProtoConvertTest, EmptyProtoGetsTorchDefaults) {
  v1::TableSpec proto;
  proto.set_name("t");
  const TableSpec spec = *FromProto(proto);
  EXPECT_EQ(spec.padding_idx, std::nullopt);
  EXPECT_EQ(spec.max_norm, std::nullopt);
  EXPECT_EQ(spec.norm_type, 2.0f);
  EXPECT_EQ(spec.initializer.kind, InitializerSpec::Kind::kNormal);
  EXPECT_EQ(spec.initializer.a, 0.0f);
  EXPECT_EQ(spec.initializer.b, 1.0f);
  ExpectSameOptimizer(spec.optimizer,
                      DefaultOptimizerSpec(OptimizerKind::kSgd));
}

TEST(ProtoConvertTest, NormalWithoutStdHasStdOne) {
  v1::TableSpec proto;
  proto.mutable_initializer()->mutable_normal()->set_mean(0.5f);
  const TableSpec spec = *FromProto(proto);
  EXPECT_EQ(spec.initializer.a, 0.5f);
  EXPECT_EQ(spec.initializer.b, 1.0f);
}

TEST(ProtoConvertTest, DTypesConvertBothWaysAndUnspecifiedIsFloat32) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    EXPECT_EQ(*FromProto(ToProto(dtype)), dtype);
  }
  EXPECT_EQ(*FromProto(v1::DTYPE_UNSPECIFIED), DType::kFloat32);
}

TEST(ProtoConvertTest, UnknownDTypeAndBagModeAreInvalidArgument) {
  absl::Status status = FromProto(static_cast<v1::DType>(42)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "unknown dtype 42");
  status = FromProto(static_cast<v1::BagMode>(7)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "unknown bag mode 7");
  EXPECT_EQ(*FromProto(v1::BAG_MODE_SUM), BagMode::kSum);
  EXPECT_EQ(*FromProto(v1::BAG_MODE_MEAN), BagMode::kMean);
  EXPECT_EQ(*FromProto(v1::BAG_MODE_MAX), BagMode::kMax);
}

v1::Tensor Tensor(std::vector<int64_t> shape, size_t bytes,
                  v1::DType dtype = v1::DTYPE_FLOAT32) {
  v1::Tensor tensor;
  tensor.set_dtype(dtype);
  for (int64_t d : shape) tensor.add_shape(d);
  tensor.set_data(std::string(bytes, '\0'));
  return tensor;
}

void ExpectInvalid(const absl::Status& status, const std::string& message) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(status.message(), message);
}

TEST(ProtoConvertTest, FloatViewViewsTheBytesWithoutACopy) {
  const v1::Tensor tensor = Tensor({2, 3}, 24, v1::DTYPE_UNSPECIFIED);
  absl::StatusOr<absl::Span<const float>> view = FloatView(tensor, "grad");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->size(), 6u);
  EXPECT_EQ(static_cast<const void*>(view->data()),
            static_cast<const void*>(tensor.data().data()));
}

TEST(ProtoConvertTest, FloatViewRejectionsSayWhatIsWrong) {
  ExpectInvalid(FloatView(Tensor({2}, 4, v1::DTYPE_FLOAT16), "grad").status(),
                "grad must be float32, got DTYPE_FLOAT16");
  ExpectInvalid(FloatView(Tensor({2, -1}, 0), "grad").status(),
                "grad has an invalid shape [2, -1]");
  ExpectInvalid(
      FloatView(Tensor({int64_t{1} << 40, int64_t{1} << 40}, 0), "grad")
          .status(),
      "grad has an invalid shape [1099511627776, 1099511627776]");
  ExpectInvalid(FloatView(Tensor({2, 2}, 12), "values").status(),
                "values has shape [2, 2] (4 elements) but 12 bytes of "
                "float32 data");
  ExpectInvalid(FloatView(Tensor({2}, 7), "values").status(),
                "values has shape [2] (2 elements) but 7 bytes of float32 "
                "data");
}

TEST(ProtoConvertTest, ShapesOfMoreThan16DimensionsAreRefusedUnprinted) {
  std::vector<int64_t> sixteen(kMaxShapeRank, 1);
  sixteen.back() = 4;
  EXPECT_TRUE(RowsView(Tensor(sixteen, 16), 1, 4, "grad").ok());
  std::vector<int64_t> many(100000, 1);
  many.back() = 4;
  ExpectInvalid(FloatView(Tensor(many, 16), "grad").status(),
                "grad has 100000 dimensions; at most 16 are allowed");
  ExpectInvalid(RowsView(Tensor(many, 16), 1, 4, "values").status(),
                "values has 100000 dimensions; at most 16 are allowed");
}

TEST(ProtoConvertTest, RowsViewTakesAnyLeadingShapeOfTheRightProduct) {
  EXPECT_TRUE(RowsView(Tensor({6, 4}, 96), 6, 4, "grad").ok());
  EXPECT_TRUE(RowsView(Tensor({2, 3, 4}, 96), 6, 4, "grad").ok());
}

TEST(ProtoConvertTest, RowsViewRejectionsNameTheExpectedShape) {
  ExpectInvalid(RowsView(Tensor({2, 3}, 24), 2, 4, "grad").status(),
                "grad has shape [2, 3], expected [2, 4]");
  ExpectInvalid(RowsView(Tensor({8}, 32), 2, 4, "grad").status(),
                "grad has shape [8], expected [2, 4]");
  ExpectInvalid(RowsView(Tensor({3, 4}, 48), 2, 4, "grad").status(),
                "grad has shape [3, 4], expected [2, 4]");
  ExpectInvalid(RowsView(Tensor({2, 4}, 4), 2, 4, "grad").status(),
                "grad has shape [2, 4] (8 elements) but 4 bytes of float32 "
                "data");
}

}  // namespace
}  // namespace embedding
