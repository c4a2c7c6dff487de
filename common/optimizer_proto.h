// OptimizerSpec <-> embedding.v1.Optimizer, driven by the optimizer table:
// the oneof field is the optimizer's name and each options field is a
// hyper-parameter's name, so a new optimizer needs no code here. The server
// converts requests with it; the CLI builds and prints optimizers with it.
//
//   OptimizerSpec spec = OptimizerFromProto(request.optimizer());
//   OptimizerToProto(spec, info.mutable_spec()->mutable_optimizer());
//
// Thread-safe: pure functions.
#ifndef COMMON_OPTIMIZER_PROTO_H_
#define COMMON_OPTIMIZER_PROTO_H_

#include "common/optimizer_kinds.h"
#include "embedding/v1/embedding_service.pb.h"

namespace embedding {

// The optimizer with the table's defaults for unset fields (SGD when none is
// set). A field without presence (`lr`) counts as unset when zero. Values
// are not checked: see ValidateOptimizerSpec.
OptimizerSpec OptimizerFromProto(const v1::Optimizer& proto);

// Writes every hyper-parameter of `spec`'s kind.
void OptimizerToProto(const OptimizerSpec& spec, v1::Optimizer* proto);

}  // namespace embedding

#endif  // COMMON_OPTIMIZER_PROTO_H_
