// Decoding the raw little-endian fields of requests and replies in the
// client tests (the host is little-endian, as the wire).
#ifndef TESTS_CLIENT_WIRE_BYTES_H_
#define TESTS_CLIENT_WIRE_BYTES_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace embedding::testing {

// The elements of `bytes` as T, e.g. a Tensor's float32 data or an
// `indices_le` field's int64s.
template <typename T>
std::vector<T> DecodeLittleEndian(const std::string& bytes) {
  std::vector<T> values(bytes.size() / sizeof(T));
  if (!values.empty()) {
    std::memcpy(values.data(), bytes.data(), values.size() * sizeof(T));
  }
  return values;
}

inline std::vector<float> DecodeFloats(const std::string& bytes) {
  return DecodeLittleEndian<float>(bytes);
}

inline std::vector<int64_t> DecodeIndicesLe(const std::string& bytes) {
  return DecodeLittleEndian<int64_t>(bytes);
}

}  // namespace embedding::testing

#endif  // TESTS_CLIENT_WIRE_BYTES_H_
