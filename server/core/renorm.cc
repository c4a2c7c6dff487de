#include "server/core/renorm.h"

#include <algorithm>
#include <cmath>

namespace embedding {

double RowNorm(const float* row, int64_t dim, float norm_type) {
  double result = 0;
  if (std::isinf(norm_type)) {
    for (int64_t d = 0; d < dim; ++d) {
      result = std::max(result, std::fabs(double{row[d]}));
    }
    return result;
  }
  if (norm_type == 1.0f) {
    for (int64_t d = 0; d < dim; ++d) result += std::fabs(double{row[d]});
    return result;
  }
  if (norm_type == 2.0f) {
    for (int64_t d = 0; d < dim; ++d) result += double{row[d]} * row[d];
    return std::sqrt(result);
  }
  for (int64_t d = 0; d < dim; ++d) {
    result += std::pow(std::fabs(double{row[d]}), double{norm_type});
  }
  return std::pow(result, 1.0 / norm_type);
}

bool RenormRow(float* row, int64_t dim, float max_norm, float norm_type) {
  const double norm = RowNorm(row, dim, norm_type);
  if (!(norm > max_norm)) return false;
  const float scale = static_cast<float>(max_norm / (norm + 1e-7));
  for (int64_t d = 0; d < dim; ++d) row[d] *= scale;
  return true;
}

}  // namespace embedding
