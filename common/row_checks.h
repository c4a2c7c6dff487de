// Checks of float rows a caller sends (gradients, rows to write), shared by
// the server's engine and the sharded C++ client, which refuses a bad array
// with the server's message before it splits it over the shards.
//
//   EMBEDDING_RETURN_IF_ERROR(CheckRowsShape(grad, indices.size(), dim,
//                                            "grad"));
//
// Thread-safe: pure functions.
#ifndef COMMON_ROW_CHECKS_H_
#define COMMON_ROW_CHECKS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace embedding {

// INVALID_ARGUMENT, naming `what` and the row and column, for a NaN or an
// infinity in `values`, rows of `dim` floats.
absl::Status CheckFiniteRows(absl::Span<const float> values, int64_t dim,
                             const char* what);

// INVALID_ARGUMENT, naming `what`, unless `values` holds [rows, dim] floats,
// all finite (as CheckFiniteRows).
absl::Status CheckRowsShape(absl::Span<const float> values, int64_t rows,
                            int64_t dim, const char* what);

}  // namespace embedding

#endif  // COMMON_ROW_CHECKS_H_
