// max_norm as torch's embedding_renorm_ applies it to the rows a forward
// pass reads.
#ifndef SERVER_CORE_RENORM_H_
#define SERVER_CORE_RENORM_H_

#include <cstdint>

namespace embedding {

// The norm_type-norm of a row, in double as embedding_renorm_ reads it
// (norm_type may be +inf: the max-norm).
double RowNorm(const float* row, int64_t dim, float norm_type);

// Scales `row` by max_norm / (norm + 1e-7) when its norm exceeds max_norm;
// returns whether it did.
bool RenormRow(float* row, int64_t dim, float max_norm, float norm_type);

}  // namespace embedding

#endif  // SERVER_CORE_RENORM_H_
