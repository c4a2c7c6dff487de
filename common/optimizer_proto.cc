#include "common/optimizer_proto.h"

#include <string>

namespace embedding {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

const FieldDescriptor* OptionsField(const OptimizerInfo& info) {
  return v1::Optimizer::descriptor()->FindFieldByName(std::string(info.name));
}

const FieldDescriptor* ParamField(const Message& options,
                                  const HyperParameter& param) {
  return options.GetDescriptor()->FindFieldByName(std::string(param.name));
}

}  // namespace

OptimizerSpec OptimizerFromProto(const v1::Optimizer& proto) {
  const FieldDescriptor* set_field =
      v1::Optimizer::descriptor()->FindFieldByNumber(proto.kind_case());
  // optimizer_proto_test checks that every kind in the proto has a table
  // entry and every hyper-parameter a float field.
  const OptimizerInfo* info =
      set_field == nullptr ? nullptr : FindOptimizer(set_field->name());
  if (info == nullptr) return DefaultOptimizerSpec(OptimizerKind::kSgd);
  OptimizerSpec spec = DefaultOptimizerSpec(info->kind);
  const Message& options = proto.GetReflection()->GetMessage(proto, set_field);
  const google::protobuf::Reflection* reflection = options.GetReflection();
  for (const HyperParameter& param : info->params) {
    const FieldDescriptor* field = ParamField(options, param);
    const bool set = field->has_presence()
                         ? reflection->HasField(options, field)
                         : reflection->GetFloat(options, field) != 0.0f;
    if (set) spec.*param.field = reflection->GetFloat(options, field);
  }
  return spec;
}

void OptimizerToProto(const OptimizerSpec& spec, v1::Optimizer* proto) {
  const OptimizerInfo& info = InfoOf(spec.kind);
  Message* options =
      proto->GetReflection()->MutableMessage(proto, OptionsField(info));
  const google::protobuf::Reflection* reflection = options->GetReflection();
  for (const HyperParameter& param : info.params) {
    reflection->SetFloat(options, ParamField(*options, param),
                         spec.*param.field);
  }
}

}  // namespace embedding
