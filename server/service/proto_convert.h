// Conversions between the wire messages (embedding.v1) and the engine's
// types. The engine never sees protobuf; this is the only place that maps
// one to the other.
//
//   absl::StatusOr<TableSpec> spec = FromProto(request.spec());
//   ToProto(stats, response);
#ifndef SERVER_SERVICE_PROTO_CONVERT_H_
#define SERVER_SERVICE_PROTO_CONVERT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "embedding/v1/embedding_service.pb.h"
#include "server/core/bag.h"
#include "server/core/dtype.h"
#include "server/core/embedding_table.h"
#include "server/core/table_spec.h"

namespace embedding {

// The spec with defaults filled in (SGD, normal(0, 1), norm_type 2); values
// are checked later, by ValidateTableSpec. INVALID_ARGUMENT for an enum value
// this server does not know (a dynamic table's eviction).
absl::StatusOr<TableSpec> FromProto(const v1::TableSpec& proto);

void ToProto(const TableStats& stats, v1::TableInfo* info);

// The output element type; INVALID_ARGUMENT for an unknown value.
absl::StatusOr<DType> FromProto(v1::DType dtype);
v1::DType ToProto(DType dtype);

absl::StatusOr<BagMode> FromProto(v1::BagMode mode);

// Most dimensions a shape from a client may have (a Lookup's index shape, a
// Tensor's): each costs memory in the response, and none of torch's uses
// needs more.
inline constexpr int kMaxShapeRank = 16;

// INVALID_ARGUMENT "<what> has N dimensions; at most 16 are allowed" for a
// shape of more than kMaxShapeRank dimensions. Check it before anything
// else reads the shape, and before a message prints it (ShapeText).
absl::Status CheckShapeRank(
    const google::protobuf::RepeatedField<int64_t>& shape,
    absl::string_view what);

// "[2, 3, 4]", for messages. REQUIRES: CheckShapeRank(shape) is OK (a
// longer shape would be printed whole).
std::string ShapeText(const google::protobuf::RepeatedField<int64_t>& shape);

// Views `tensor` as float32 elements after checking its dtype, its rank
// (CheckShapeRank) and that its shape matches its bytes. INVALID_ARGUMENT
// names `what` and the problem.
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
