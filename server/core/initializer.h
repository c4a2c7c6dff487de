// Counter-based initialisation: the value of (row, column) is a pure function
// of (seed, global row, column), so a table's content does not depend on how
// many shards or servers hold it, nor on thread timing.
//
//   EMBEDDING_RETURN_IF_ERROR(CheckInitializerStaysFinite(spec.initializer));
//   FillRow(spec.initializer, spec.seed, global_row, dim, row_ptr);
//
// Every value is computed in double and is finite in float32 for every
// initializer CheckInitializerStaysFinite accepts.
#ifndef SERVER_CORE_INITIALIZER_H_
#define SERVER_CORE_INITIALIZER_H_

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "server/core/table_spec.h"

namespace embedding {

// Writes the `dim` initial values of `global_row` to `out`.
void FillRow(const InitializerSpec& init, uint64_t seed, int64_t global_row,
             int64_t dim, float* out);

// The largest |z| of FillRow's standard normal draws: sqrt(-2 ln u) at the
// smallest uniform u it draws, 2^-53 (about 8.5717).
double MaxAbsStandardNormal();

// INVALID_ARGUMENT when FillRow could write a value that is not finite in
// float32: a normal whose |mean| + MaxAbsStandardNormal() * std passes the
// largest float. Uniform and constant initializers with finite parameters
// always stay finite. REQUIRES: finite parameters (ValidateTableSpec).
absl::Status CheckInitializerStaysFinite(const InitializerSpec& init);

namespace internal {

// The uniforms FillRow draws are k * 2^-53 for k in [1, 2^53].
inline constexpr double kSmallestUniform = 0x1p-53;

// The two Box-Muller normals (cosine, sine) of `init` for the uniform pair
// (u1, u2) in (0, 1]: what FillRow writes to columns 2k and 2k + 1.
std::pair<float, float> NormalPair(const InitializerSpec& init, double u1,
                                   double u2);

}  // namespace internal
}  // namespace embedding

#endif  // SERVER_CORE_INITIALIZER_H_
