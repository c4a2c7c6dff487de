#include "common/optimizer_proto.h"

#include <string>

#include "gtest/gtest.h"

namespace embedding {
namespace {

using google::protobuf::FieldDescriptor;

// The proto and the table must agree, or a kind would silently be SGD.
TEST(OptimizerProtoTest, EveryProtoKindHasATableEntryWithFloatFields) {
  const google::protobuf::Descriptor* optimizer = v1::Optimizer::descriptor();
  ASSERT_EQ(optimizer->field_count(), static_cast<int>(AllOptimizers().size()));
  for (int i = 0; i < optimizer->field_count(); ++i) {
    const FieldDescriptor* kind = optimizer->field(i);
    const OptimizerInfo* info = FindOptimizer(kind->name());
    ASSERT_NE(info, nullptr) << kind->name() << " has no table entry";
    const google::protobuf::Descriptor* options = kind->message_type();
    EXPECT_EQ(options->field_count(), static_cast<int>(info->params.size()))
        << kind->name() << ": every options field is a hyper-parameter";
    for (const HyperParameter& param : info->params) {
      const FieldDescriptor* field =
          options->FindFieldByName(std::string(param.name));
      ASSERT_NE(field, nullptr) << kind->name() << "." << param.name;
      EXPECT_EQ(field->type(), FieldDescriptor::TYPE_FLOAT);
    }
  }
}

TEST(OptimizerProtoTest, UnsetOptimizerIsDefaultSgd) {
  const OptimizerSpec spec = OptimizerFromProto(v1::Optimizer());
  EXPECT_EQ(spec.kind, OptimizerKind::kSgd);
  EXPECT_EQ(spec.lr, DefaultOptimizerSpec(OptimizerKind::kSgd).lr);
}

TEST(OptimizerProtoTest, UnsetFieldsTakeDefaultsAndZeroLrIsUnset) {
  v1::Optimizer proto;
  proto.mutable_ftrl()->set_l1(0.25f);
  proto.mutable_ftrl()->set_beta(0.0f);  // Present: stays 0.
  const OptimizerSpec spec = OptimizerFromProto(proto);
  const OptimizerSpec defaults = DefaultOptimizerSpec(OptimizerKind::kFtrl);
  EXPECT_EQ(spec.kind, OptimizerKind::kFtrl);
  EXPECT_EQ(spec.l1, 0.25f);
  EXPECT_EQ(spec.lr, defaults.lr);
  EXPECT_EQ(spec.lr_power, defaults.lr_power);
  EXPECT_EQ(spec.initial_accumulator_value, defaults.initial_accumulator_value);
  EXPECT_EQ(spec.beta, 0.0f);
}

// Every kind: non-default values survive ToProto then FromProto.
TEST(OptimizerProtoTest, EveryKindRoundTrips) {
  for (const OptimizerInfo& info : AllOptimizers()) {
    OptimizerSpec spec = DefaultOptimizerSpec(info.kind);
    float value = 0.125f;
    for (const HyperParameter& param : info.params) {
      spec.*param.field =
          param.range == ParamRange::kNonPositive ? -value : value;
      value /= 2;
    }
    v1::Optimizer proto;
    OptimizerToProto(spec, &proto);
    const OptimizerSpec back = OptimizerFromProto(proto);
    EXPECT_EQ(back.kind, info.kind);
    for (const HyperParameter& param : info.params) {
      EXPECT_EQ(back.*param.field, spec.*param.field)
          << info.name << "." << param.name;
    }
  }
}

}  // namespace
}  // namespace embedding
