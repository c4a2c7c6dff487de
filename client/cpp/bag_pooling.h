// nn.EmbeddingBag on the client, for tables split over several servers: no
// one server holds a bag's rows, so ShardedEmbeddingClient gathers them with
// a sharded Lookup and pools them here, and turns a bag gradient into the
// per-index gradient of a sharded PushGradients. The batch checks and the
// arithmetic are the server's own (common/bag_math.h), so the results are
// equal bit for bit and the errors carry the server's messages; this file
// adds the gather's row list, the rounding through the reply's dtype and the
// gradient rows of a PushGradients.
//
//   EMBEDDING_RETURN_IF_ERROR(internal::ValidateBags(bags));
//   const BagMarkers markers = BagMarkers::ForTable(dynamic, padding);
//   std::vector<int64_t> rows = internal::PooledRows(bags, markers);
//   ... look the rows up ...
//   absl::StatusOr<BagLookupResult> pooled =
//       internal::PoolBags(bags, dim, markers, row_of, dtype);
//
// `markers` (common/bag_math.h) name the padding row to skip and what marks
// an empty bag in max_indices: -1 in a dense table, INT64_MIN in a dynamic
// one.
//
// Thread-safe: pure functions.
#ifndef CLIENT_CPP_BAG_POOLING_H_
#define CLIENT_CPP_BAG_POOLING_H_

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "client/cpp/embedding_client.h"
#include "common/bag_math.h"
#include "common/row_checks.h"

namespace embedding::internal {

// INVALID_ARGUMENT, with the server's message, for a mode other than SUM,
// MEAN and MAX, offsets that are empty, do not start at 0, decrease or pass
// the end of indices, and per_sample_weights outside SUM, of the wrong
// length or not finite.
absl::Status ValidateBags(const Bags& bags);

// The server's check of a gradient or of rows to write (common/row_checks.h).
using ::embedding::CheckRowsShape;

// The distinct rows the bags pool (markers.padding left out), in the order
// they first occur.
std::vector<int64_t> PooledRows(const Bags& bags, const BagMarkers& markers);

// Pools `bags` as the server does: [bags, dim] rows rounded through `dtype`
// as the server's reply would be, plus max_indices in MAX mode.
// `row_of(index)` gives the floats of a row of PooledRows. INVALID_ARGUMENT
// as ValidateBags.
absl::StatusOr<BagLookupResult> PoolBags(
    const Bags& bags, int64_t dim, const BagMarkers& markers,
    absl::FunctionRef<const float*(int64_t)> row_of, v1::DType dtype);

// The gradient of a PushBagGradients as the rows and gradient rows of a
// PushGradients that accumulates the same floats in the same order (as
// ScatterBagGradients): one row per non-padding position for SUM and MEAN,
// one per winning row for MAX. With include_last_offset, an index past the
// last bag whose row gets a gradient is sent with a gradient of -0.0 (which
// changes no sum): the server's scale_grad_by_freq counts a row over all of
// `indices`, so the shard must count it too. INVALID_ARGUMENT as
// ValidateBags, and, with the server's message, for max_indices of the
// wrong size or naming a row that is not in the bags. REQUIRES: grad of
// shape [bags, dim].
struct IndexGradient {
  std::vector<int64_t> indices;
  std::vector<float> grad;
};
absl::StatusOr<IndexGradient> BagGradientToRows(
    const Bags& bags, int64_t dim, const BagMarkers& markers,
    absl::Span<const float> grad, absl::Span<const int64_t> max_indices);

}  // namespace embedding::internal

#endif  // CLIENT_CPP_BAG_POOLING_H_
