// Request and reply pieces that every client of the wire contract builds the
// same way: float32 tensors as raw little-endian bytes, indices as raw
// little-endian int64 (`indices_le`) or packed varints, the fields LookupBag
// and PushBagGradients share. Used by EmbeddingClient and
// ShardedEmbeddingClient.
//
//   v1::PushGradientsRequest request;
//   internal::SetIndicesLe(indices, request.mutable_indices_le());
//   absl::Status s = internal::EncodeRows(grad, indices.size(), "grad",
//                                         request.mutable_grad());
//
// Thread-safe: pure functions.
#ifndef CLIENT_CPP_WIRE_CODEC_H_
#define CLIENT_CPP_WIRE_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/cpp/embedding_client.h"
#include "embedding/v1/embedding_service.pb.h"

namespace embedding::internal {

// Appends the elements of `tensor` to `out` as float32: one copy, and no
// zero fill of the new elements before it for float32.
// INTERNAL when the server sent bytes that do not match the shape.
absl::Status AppendTensorData(const v1::Tensor& tensor,
                              std::vector<float>* out);

// Replaces `result` with `tensor` as float32, reusing its buffer. INTERNAL
// as AppendTensorData.
absl::Status DecodeTensorInto(const v1::Tensor& tensor, FloatTensor* result);
absl::StatusOr<FloatTensor> DecodeTensor(const v1::Tensor& tensor);

// INVALID_ARGUMENT naming `what` unless `values` are `rows` whole rows.
absl::Status CheckWholeRows(absl::Span<const float> values, size_t rows,
                            absl::string_view what);

// INVALID_ARGUMENT unless `values` are whole rows of `dim` floats (a range
// write's rows).
absl::Status CheckRowsOfDimension(absl::Span<const float> values, int64_t dim);

// Writes `values` as a float32 tensor [rows, values.size() / rows] straight
// into the request's bytes. INVALID_ARGUMENT as CheckWholeRows.
absl::Status EncodeRows(absl::Span<const float> values, size_t rows,
                        absl::string_view what, v1::Tensor* tensor);

// Fills a `repeated int64` field: a varint per index on the wire. For the
// fields that have no `indices_le` twin, and for bag requests (see
// SetBags).
void SetIndices(absl::Span<const int64_t> indices,
                google::protobuf::RepeatedField<int64_t>* field);

// Fills an `indices_le` field: the indices' bytes as they are in memory (the
// host is little-endian, as the field), one copy and no conversion per
// index on either side. What Lookup, LookupStream and PushGradients send
// (client/CONTRACT.md, "Index encoding").
void SetIndicesLe(absl::Span<const int64_t> indices, std::string* field);

// A Lookup of `indices` in `table`, as Lookup and LookupStream send it.
v1::LookupRequest LookupRequestOf(absl::string_view table,
                                  absl::Span<const int64_t> indices,
                                  const LookupOptions& options);

// The bags `bags` describe (nn.EmbeddingBag's count).
size_t BagCount(const Bags& bags);

// LookupBagRequest and PushBagGradientsRequest share these fields. The
// indices travel as `repeated int64`, not `indices_le`: a server older than
// that field would read offsets [0] with no indices as one empty bag
// instead of refusing the request.
template <typename Request>
void SetBags(absl::string_view table, const Bags& bags, Request* request) {
  request->set_table(std::string(table));
  SetIndices(bags.indices, request->mutable_indices());
  SetIndices(bags.offsets, request->mutable_offsets());
  request->set_mode(bags.mode);
  request->mutable_per_sample_weights()->Add(bags.per_sample_weights.begin(),
                                             bags.per_sample_weights.end());
  request->set_include_last_offset(bags.include_last_offset);
}

}  // namespace embedding::internal

#endif  // CLIENT_CPP_WIRE_CODEC_H_
