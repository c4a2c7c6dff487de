// Counter-based initialisation: the value of (row, column) is a pure function
// of (seed, global row, column), so a table's content does not depend on how
// many shards or servers hold it, nor on thread timing.
//
//   FillRow(spec.initializer, spec.seed, global_row, dim, row_ptr);
#ifndef SERVER_CORE_INITIALIZER_H_
#define SERVER_CORE_INITIALIZER_H_

#include <cstdint>

#include "server/core/table_spec.h"

namespace embedding {

// Writes the `dim` initial values of `global_row` to `out`.
void FillRow(const InitializerSpec& init, uint64_t seed, int64_t global_row,
             int64_t dim, float* out);

}  // namespace embedding

#endif  // SERVER_CORE_INITIALIZER_H_
