#include "client/cpp/wire_codec.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/checked_math.h"
#include "common/float16.h"
#include "common/status_macros.h"

namespace embedding::internal {

static_assert(std::endian::native == std::endian::little,
              "Tensor.data and indices_le are little-endian; this client "
              "copies raw floats and int64s");

absl::Status AppendTensorData(const v1::Tensor& tensor,
                              std::vector<float>* out) {
  const bool half = tensor.dtype() == v1::DTYPE_FLOAT16;
  const bool bfloat = tensor.dtype() == v1::DTYPE_BFLOAT16;
  const int64_t element_size =
      half || bfloat ? sizeof(uint16_t) : sizeof(float);
  const absl::StatusOr<int64_t> count =
      ShapeElementCount(tensor.shape(), "the server's tensor");
  const std::optional<int64_t> bytes =
      count.ok() ? CheckedMul(*count, element_size) : std::nullopt;
  if (!bytes.has_value() ||
      *bytes != static_cast<int64_t>(tensor.data().size())) {
    return absl::InternalError(
        absl::StrCat("server sent a tensor of ", tensor.data().size(),
                     " bytes that does not match its shape"));
  }
  const char* src = tensor.data().data();
  // float32 from an aligned buffer (a parsed message's string is a heap
  // block): one copy (a memmove) into `out`'s new memory. resize() would
  // zero-fill that memory first, a pass that the copy then overwrites.
  if (!half && !bfloat &&
      reinterpret_cast<uintptr_t>(src) % alignof(float) == 0) {
    const float* floats = reinterpret_cast<const float*>(src);
    out->insert(out->end(), floats, floats + *count);
    return absl::OkStatus();
  }
  const size_t old_size = out->size();
  out->resize(old_size + *count);
  float* dst = out->data() + old_size;
  if (!half && !bfloat) {
    std::memcpy(dst, src, *bytes);
    return absl::OkStatus();
  }
  for (int64_t i = 0; i < *count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, src + i * sizeof(bits), sizeof(bits));
    dst[i] = half ? HalfToFloat(bits) : BFloat16ToFloat(bits);
  }
  return absl::OkStatus();
}

absl::Status DecodeTensorInto(const v1::Tensor& tensor, FloatTensor* result) {
  result->shape.assign(tensor.shape().begin(), tensor.shape().end());
  result->data.clear();  // Keeps the capacity.
  return AppendTensorData(tensor, &result->data);
}

absl::StatusOr<FloatTensor> DecodeTensor(const v1::Tensor& tensor) {
  FloatTensor result;
  EMBEDDING_RETURN_IF_ERROR(DecodeTensorInto(tensor, &result));
  return result;
}

absl::Status CheckWholeRows(absl::Span<const float> values, size_t rows,
                            absl::string_view what) {
  if (rows == 0 ? !values.empty() : values.size() % rows != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", values.size(),
                     " values, which is not a multiple of ", rows, " rows"));
  }
  return absl::OkStatus();
}

absl::Status CheckRowsOfDimension(absl::Span<const float> values, int64_t dim) {
  if (dim <= 0 || values.size() % dim != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("values has ", values.size(),
                     " floats, which is not whole rows of dimension ", dim));
  }
  return absl::OkStatus();
}

absl::Status EncodeRows(absl::Span<const float> values, size_t rows,
                        absl::string_view what, v1::Tensor* tensor) {
  EMBEDDING_RETURN_IF_ERROR(CheckWholeRows(values, rows, what));
  tensor->set_dtype(v1::DTYPE_FLOAT32);
  tensor->add_shape(static_cast<int64_t>(rows));
  tensor->add_shape(rows == 0 ? 0 : static_cast<int64_t>(values.size() / rows));
  tensor->mutable_data()->assign(reinterpret_cast<const char*>(values.data()),
                                 values.size() * sizeof(float));
  return absl::OkStatus();
}

void SetIndices(absl::Span<const int64_t> indices,
                google::protobuf::RepeatedField<int64_t>* field) {
  field->Reserve(static_cast<int>(indices.size()));
  field->Add(indices.begin(), indices.end());
}

void SetIndicesLe(absl::Span<const int64_t> indices, std::string* field) {
  if (indices.empty()) {  // data() may be null.
    field->clear();
    return;
  }
  field->assign(reinterpret_cast<const char*>(indices.data()),
                indices.size() * sizeof(int64_t));
}

v1::LookupRequest LookupRequestOf(absl::string_view table,
                                  absl::Span<const int64_t> indices,
                                  const LookupOptions& options) {
  v1::LookupRequest request;
  request.set_table(std::string(table));
  SetIndicesLe(indices, request.mutable_indices_le());
  request.mutable_shape()->Add(options.shape.begin(), options.shape.end());
  request.set_dtype(options.dtype);
  return request;
}

size_t BagCount(const Bags& bags) {
  if (bags.include_last_offset) {
    return bags.offsets.empty() ? 0 : bags.offsets.size() - 1;
  }
  return bags.offsets.size();
}

}  // namespace embedding::internal
