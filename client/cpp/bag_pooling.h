// nn.EmbeddingBag on the client, for tables split over several servers: no
// one server holds a bag's rows, so ShardedEmbeddingClient gathers them with
// a sharded Lookup and pools them here, and turns a bag gradient into the
// per-index gradient of a sharded PushGradients. The arithmetic is the
// server's (server/core/bag.cc: accumulation order and type, MEAN's divisor
// without the padding row, MAX's ties, empty bags) so the results are equal
// bit for bit, and the checks give the server's messages. (It mirrors that
// file because client/ never includes server/; see the report of issue 11
// for moving the shared part to common/.)
//
//   EMBEDDING_RETURN_IF_ERROR(internal::ValidateBags(bags));
//   std::vector<int64_t> rows = internal::PooledRows(bags, padding_row);
//   ... look the rows up ...
//   internal::PoolBags(bags, dim, padding_row, row_of, dtype, &result);
//
// Thread-safe: pure functions.
#ifndef CLIENT_CPP_BAG_POOLING_H_
#define CLIENT_CPP_BAG_POOLING_H_

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "client/cpp/embedding_client.h"

namespace embedding::internal {

// INVALID_ARGUMENT, with the server's message, for a mode other than SUM,
// MEAN and MAX, offsets that are empty, do not start at 0, decrease or pass
// the end of indices, and per_sample_weights outside SUM, of the wrong
// length or not finite.
absl::Status ValidateBags(const Bags& bags);

// INVALID_ARGUMENT, with the server's message, unless `values` is float32
// [rows, dim] of finite values.
absl::Status CheckRowsShape(absl::Span<const float> values, int64_t rows,
                            int64_t dim, const char* what);

// The distinct rows the bags pool (the padding row left out), in the order
// they first occur.
std::vector<int64_t> PooledRows(const Bags& bags, int64_t padding_row);

// Pools validated `bags` as the server does: [bags, dim] rows rounded
// through `dtype` as the server's reply would be, plus max_indices in MAX
// mode. `row_of(index)` gives the floats of a row of PooledRows.
BagLookupResult PoolBags(const Bags& bags, int64_t dim, int64_t padding_row,
                         absl::FunctionRef<const float*(int64_t)> row_of,
                         v1::DType dtype);

// The gradient of a PushBagGradients as the rows and gradient rows of a
// PushGradients that accumulates the same floats in the same order (as
// ScatterBagGradients): one row per non-padding position for SUM and MEAN
// (scale_grad_by_freq counts stay right), one per winning row for MAX.
// INVALID_ARGUMENT, with the server's message, for max_indices of the
// wrong size or naming a row that is not in the bags. REQUIRES: validated
// bags, grad of shape [bags, dim].
struct IndexGradient {
  std::vector<int64_t> indices;
  std::vector<float> grad;
};
absl::StatusOr<IndexGradient> BagGradientToRows(
    const Bags& bags, int64_t dim, int64_t padding_row,
    absl::Span<const float> grad, absl::Span<const int64_t> max_indices);

}  // namespace embedding::internal

#endif  // CLIENT_CPP_BAG_POOLING_H_
