// Conversions between the wire messages (embedding.v1) and the engine's
// types. The engine never sees protobuf; this is the only place that maps
// one to the other.
//
//   TableSpec spec = FromProto(request.spec());
//   ToProto(stats, response);
#ifndef SERVER_SERVICE_PROTO_CONVERT_H_
#define SERVER_SERVICE_PROTO_CONVERT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "embedding/v1/embedding_service.pb.h"
#include "server/core/bag.h"
#include "server/core/dtype.h"
#include "server/core/embedding_table.h"
#include "server/core/table_spec.h"

namespace embedding {

// The spec with defaults filled in (SGD, normal(0, 1), norm_type 2); values
// are checked later, by ValidateTableSpec.
TableSpec FromProto(const v1::TableSpec& proto);

void ToProto(const TableStats& stats, v1::TableInfo* info);

// The output element type; INVALID_ARGUMENT for an unknown value.
absl::StatusOr<DType> FromProto(v1::DType dtype);
v1::DType ToProto(DType dtype);

absl::StatusOr<BagMode> FromProto(v1::BagMode mode);

// Views `tensor` as float32 elements after checking its dtype and that its
// shape matches its bytes. INVALID_ARGUMENT names `what` and the problem.
absl::StatusOr<absl::Span<const float>> FloatView(const v1::Tensor& tensor,
                                                  const char* what);

// Views a float32 tensor of `rows` rows of `dim`: its shape is [..., dim]
// and its leading dimensions multiply to `rows` (so [rows, dim], or
// [batch, seq, dim] for the gradient of a [batch, seq] lookup).
// INVALID_ARGUMENT names `what` and the shape expected, or as FloatView.
absl::StatusOr<absl::Span<const float>> RowsView(const v1::Tensor& tensor,
                                                 int64_t rows, int64_t dim,
                                                 const char* what);

}  // namespace embedding

#endif  // SERVER_SERVICE_PROTO_CONVERT_H_
