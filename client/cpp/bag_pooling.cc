#include "client/cpp/bag_pooling.h"

#include <cstddef>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/bag_math.h"
#include "common/float16.h"
#include "common/status_macros.h"

namespace embedding::internal {
namespace {

// The server's validation of the bags, as its engine's batch.
absl::StatusOr<ValidatedBagBatch> CheckedBags(const Bags& bags) {
  BagMode mode;
  switch (bags.mode) {
    case v1::BAG_MODE_SUM:
      mode = BagMode::kSum;
      break;
    case v1::BAG_MODE_MEAN:
      mode = BagMode::kMean;
      break;
    case v1::BAG_MODE_MAX:
      mode = BagMode::kMax;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown bag mode ", static_cast<int>(bags.mode)));
  }
  return ValidateBagBatch(
      BagBatch{.indices = bags.indices,
               .offsets = bags.offsets,
               .mode = mode,
               .per_sample_weights = bags.per_sample_weights,
               .include_last_offset = bags.include_last_offset});
}

// A float as it comes back from a reply of `dtype`.
float RoundTrip(float value, v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT16:
      return HalfToFloat(FloatToHalf(value));
    case v1::DTYPE_BFLOAT16:
      return BFloat16ToFloat(FloatToBFloat16(value));
    default:
      return value;
  }
}

// MAX: each element's gradient goes to the row that won it, summed per row
// in element order (as the server's AddElement does).
absl::StatusOr<IndexGradient> MaxGradientToRows(
    const ValidatedBagBatch& batch, int64_t dim, const BagMarkers& markers,
    absl::Span<const float> grad, absl::Span<const int64_t> max_indices) {
  EMBEDDING_RETURN_IF_ERROR(
      CheckMaxIndicesSize(batch, dim, max_indices.size()));
  const absl::flat_hash_set<int64_t> in_batch(batch.indices().begin(),
                                              batch.indices().end());
  IndexGradient result;
  absl::flat_hash_map<int64_t, size_t> slot_of;
  EMBEDDING_RETURN_IF_ERROR(ForEachMaxGradient(
      max_indices, markers,
      [&](int64_t index) { return in_batch.contains(index); },
      [&](size_t element, int64_t index) {
        const auto [it, inserted] = slot_of.try_emplace(index, slot_of.size());
        if (inserted) {
          result.indices.push_back(index);
          result.grad.resize(result.grad.size() + dim, 0.0f);
        }
        result.grad[it->second * dim + static_cast<int64_t>(element) % dim] +=
            grad[element];
      }));
  return result;
}

// With include_last_offset, the indices past the last bag: the server's
// scale_grad_by_freq counts them (it counts a row over the whole batch), so
// those of rows that got a gradient go along with a gradient of -0.0, the
// one float that leaves every sum as it is, bit for bit (+0.0 + -0.0 is
// +0.0).
void AddUnpooledOccurrences(const ValidatedBagBatch& batch, int64_t dim,
                            const BagMarkers& markers, IndexGradient& result) {
  const absl::Span<const int64_t> trailing =
      batch.indices().subspan(batch.BagsEnd());
  if (trailing.empty()) return;
  const absl::flat_hash_set<int64_t> with_gradient(result.indices.begin(),
                                                   result.indices.end());
  for (const int64_t index : trailing) {
    if (index == markers.padding || !with_gradient.contains(index)) continue;
    result.indices.push_back(index);
    result.grad.insert(result.grad.end(), dim, -0.0f);
  }
}

}  // namespace

absl::Status ValidateBags(const Bags& bags) {
  return CheckedBags(bags).status();
}

std::vector<int64_t> PooledRows(const Bags& bags, const BagMarkers& markers) {
  std::vector<int64_t> rows;
  absl::flat_hash_set<int64_t> seen;
  const int64_t end = bags.offsets.empty()
                          ? 0
                          : (bags.include_last_offset ? bags.offsets.back()
                                                      : bags.indices.size());
  for (int64_t position = 0; position < end; ++position) {
    const int64_t index = bags.indices[position];
    if (index != markers.padding && seen.insert(index).second) {
      rows.push_back(index);
    }
  }
  return rows;
}

absl::StatusOr<BagLookupResult> PoolBags(
    const Bags& bags, int64_t dim, const BagMarkers& markers,
    absl::FunctionRef<const float*(int64_t)> row_of, v1::DType dtype) {
  EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch batch, CheckedBags(bags));
  BagLookupResult result;
  result.embeddings.shape = {batch.bags(), dim};
  result.embeddings.data.resize(batch.bags() * dim);
  if (batch.mode() == BagMode::kMax) {
    result.max_indices.resize(batch.bags() * dim);
  }
  EMBEDDING_RETURN_IF_ERROR(PoolBagRows(
      batch, dim, markers,
      [&](int64_t index, const auto& use) { use(row_of(index)); },
      result.max_indices.empty() ? nullptr : result.max_indices.data(),
      [&](int64_t bag, const float* pooled) {
        for (int64_t d = 0; d < dim; ++d) {
          result.embeddings.data[bag * dim + d] = RoundTrip(pooled[d], dtype);
        }
      }));
  return result;
}

absl::StatusOr<IndexGradient> BagGradientToRows(
    const Bags& bags, int64_t dim, const BagMarkers& markers,
    absl::Span<const float> grad, absl::Span<const int64_t> max_indices) {
  EMBEDDING_ASSIGN_OR_RETURN(const ValidatedBagBatch batch, CheckedBags(bags));
  if (batch.mode() == BagMode::kMax) {
    return MaxGradientToRows(batch, dim, markers, grad, max_indices);
  }
  IndexGradient result;
  EMBEDDING_RETURN_IF_ERROR(ForEachBagGradient(
      batch, markers, [&](int64_t bag, int64_t index, float scale) {
        result.indices.push_back(index);
        for (int64_t d = 0; d < dim; ++d) {
          // The server adds 1.0f * this, which is exactly this.
          result.grad.push_back(scale * grad[bag * dim + d]);
        }
      }));
  AddUnpooledOccurrences(batch, dim, markers, result);
  return result;
}

}  // namespace embedding::internal
