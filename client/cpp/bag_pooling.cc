#include "client/cpp/bag_pooling.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/wire_codec.h"
#include "common/checked_math.h"
#include "common/float16.h"

namespace embedding::internal {
namespace {

std::pair<int64_t, int64_t> Bounds(const Bags& bags, int64_t bag) {
  const int64_t begin = bags.offsets[bag];
  const int64_t end = bag + 1 < static_cast<int64_t>(bags.offsets.size())
                          ? bags.offsets[bag + 1]
                          : static_cast<int64_t>(bags.indices.size());
  return {begin, end};
}

float Weight(const Bags& bags, int64_t position) {
  return bags.per_sample_weights.empty() ? 1.0f
                                         : bags.per_sample_weights[position];
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

absl::Status CheckOffsets(const Bags& bags) {
  const int64_t num_offsets = static_cast<int64_t>(bags.offsets.size());
  if (num_offsets == 0 || (bags.include_last_offset && num_offsets < 2)) {
    return absl::InvalidArgumentError(
        bags.include_last_offset
            ? "offsets needs at least 2 entries with include_last_offset"
            : "offsets is empty: a batch needs at least one bag");
  }
  if (bags.offsets[0] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("offsets[0] must be 0, got ", bags.offsets[0]));
  }
  for (int64_t i = 1; i < num_offsets; ++i) {
    if (bags.offsets[i] < bags.offsets[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "offsets must be non-decreasing: offsets[", i, "] = ",
          bags.offsets[i], " < offsets[", i - 1, "] = ", bags.offsets[i - 1]));
    }
  }
  const int64_t num_indices = static_cast<int64_t>(bags.indices.size());
  if (bags.offsets[num_offsets - 1] > num_indices) {
    return absl::InvalidArgumentError(absl::StrCat(
        "offsets[", num_offsets - 1, "] = ", bags.offsets[num_offsets - 1],
        " is past the end of indices (", num_indices, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckPerSampleWeights(const Bags& bags) {
  if (bags.per_sample_weights.empty()) return absl::OkStatus();
  if (bags.mode != v1::BAG_MODE_SUM) {
    return absl::InvalidArgumentError(
        "per_sample_weights are only supported with mode SUM, as in torch");
  }
  if (bags.per_sample_weights.size() != bags.indices.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "per_sample_weights has ", bags.per_sample_weights.size(),
        " entries, expected one per index (", bags.indices.size(), ")"));
  }
  for (size_t i = 0; i < bags.per_sample_weights.size(); ++i) {
    if (!std::isfinite(bags.per_sample_weights[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("per_sample_weights[", i, "] is not finite"));
    }
  }
  return absl::OkStatus();
}

// MAX: each element's gradient goes to the row that won it, summed per row
// in element order (as the server's AddElement does).
absl::StatusOr<IndexGradient> MaxGradientToRows(
    const Bags& bags, int64_t dim, int64_t padding_row,
    absl::Span<const float> grad, absl::Span<const int64_t> max_indices) {
  const int64_t bag_count = static_cast<int64_t>(BagCount(bags));
  const std::optional<int64_t> elements = CheckedMul(bag_count, dim);
  if (!elements.has_value() ||
      static_cast<int64_t>(max_indices.size()) != *elements) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_indices has ", max_indices.size(),
        " entries, expected bags x embedding_dim = ",
        elements.has_value() ? absl::StrCat(*elements) : "more than 2^63",
        " (as LookupBag returned them)"));
  }
  const absl::flat_hash_set<int64_t> in_batch(bags.indices.begin(),
                                              bags.indices.end());
  IndexGradient result;
  absl::flat_hash_map<int64_t, size_t> slot_of;
  for (size_t i = 0; i < max_indices.size(); ++i) {
    const int64_t index = max_indices[i];
    if (index == -1 || index == padding_row) continue;
    if (!in_batch.contains(index)) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_indices[", i, "] = ", index,
                       " is not one of the batch's indices"));
    }
    const auto [it, inserted] = slot_of.try_emplace(index, slot_of.size());
    if (inserted) {
      result.indices.push_back(index);
      result.grad.resize(result.grad.size() + dim, 0.0f);
    }
    result.grad[it->second * dim + static_cast<int64_t>(i) % dim] += grad[i];
  }
  return result;
}

}  // namespace

absl::Status ValidateBags(const Bags& bags) {
  if (bags.mode != v1::BAG_MODE_SUM && bags.mode != v1::BAG_MODE_MEAN &&
      bags.mode != v1::BAG_MODE_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown bag mode ", static_cast<int>(bags.mode)));
  }
  if (absl::Status status = CheckOffsets(bags); !status.ok()) return status;
  return CheckPerSampleWeights(bags);
}

absl::Status CheckRowsShape(absl::Span<const float> values, int64_t rows,
                            int64_t dim, const char* what) {
  const std::optional<int64_t> expected = CheckedMul(rows, dim);
  if (!expected.has_value() ||
      static_cast<int64_t>(values.size()) != *expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has ", values.size(), " elements, expected [", rows, ", ", dim,
        "] = ",
        expected.has_value() ? absl::StrCat(*expected) : "more than 2^63"));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " has a non-finite value (", values[i],
                       ") at row ", i / dim, ", column ", i % dim));
    }
  }
  return absl::OkStatus();
}

std::vector<int64_t> PooledRows(const Bags& bags, int64_t padding_row) {
  std::vector<int64_t> rows;
  absl::flat_hash_set<int64_t> seen;
  const int64_t end = bags.offsets.empty()
                          ? 0
                          : (bags.include_last_offset ? bags.offsets.back()
                                                      : bags.indices.size());
  for (int64_t position = 0; position < end; ++position) {
    const int64_t index = bags.indices[position];
    if (index != padding_row && seen.insert(index).second) {
      rows.push_back(index);
    }
  }
  return rows;
}

BagLookupResult PoolBags(const Bags& bags, int64_t dim, int64_t padding_row,
                         absl::FunctionRef<const float*(int64_t)> row_of,
                         v1::DType dtype) {
  const int64_t bag_count = static_cast<int64_t>(BagCount(bags));
  const bool is_max = bags.mode == v1::BAG_MODE_MAX;
  BagLookupResult result;
  result.embeddings.shape = {bag_count, dim};
  result.embeddings.data.resize(bag_count * dim);
  if (is_max) result.max_indices.assign(bag_count * dim, -1);
  std::vector<float> pooled(dim);
  for (int64_t bag = 0; bag < bag_count; ++bag) {
    std::fill(pooled.begin(), pooled.end(), 0.0f);
    int64_t* bag_max_indices =
        is_max ? result.max_indices.data() + bag * dim : nullptr;
    int64_t count = 0;
    const auto [begin, end] = Bounds(bags, bag);
    for (int64_t position = begin; position < end; ++position) {
      const int64_t index = bags.indices[position];
      if (index == padding_row) continue;
      const float weight = Weight(bags, position);
      const float* row = row_of(index);
      if (is_max) {
        for (int64_t d = 0; d < dim; ++d) {
          if (count == 0 || row[d] > pooled[d]) {
            pooled[d] = row[d];
            bag_max_indices[d] = index;
          }
        }
      } else {
        for (int64_t d = 0; d < dim; ++d) pooled[d] += weight * row[d];
      }
      ++count;
    }
    if (bags.mode == v1::BAG_MODE_MEAN && count > 0) {
      for (float& value : pooled) value /= static_cast<float>(count);
    }
    for (int64_t d = 0; d < dim; ++d) {
      result.embeddings.data[bag * dim + d] = RoundTrip(pooled[d], dtype);
    }
  }
  return result;
}

absl::StatusOr<IndexGradient> BagGradientToRows(
    const Bags& bags, int64_t dim, int64_t padding_row,
    absl::Span<const float> grad, absl::Span<const int64_t> max_indices) {
  if (bags.mode == v1::BAG_MODE_MAX) {
    return MaxGradientToRows(bags, dim, padding_row, grad, max_indices);
  }
  IndexGradient result;
  const int64_t bag_count = static_cast<int64_t>(BagCount(bags));
  for (int64_t bag = 0; bag < bag_count; ++bag) {
    const auto [begin, end] = Bounds(bags, bag);
    int64_t count = 0;
    for (int64_t position = begin; position < end; ++position) {
      count += bags.indices[position] == padding_row ? 0 : 1;
    }
    for (int64_t position = begin; position < end; ++position) {
      const int64_t index = bags.indices[position];
      if (index == padding_row) continue;
      const float scale = bags.mode == v1::BAG_MODE_MEAN
                              ? 1.0f / static_cast<float>(count)
                              : Weight(bags, position);
      result.indices.push_back(index);
      for (int64_t d = 0; d < dim; ++d) {
        // The server adds 1.0f * this, which is exactly this.
        result.grad.push_back(scale * grad[bag * dim + d]);
      }
    }
  }
  return result;
}

}  // namespace embedding::internal
