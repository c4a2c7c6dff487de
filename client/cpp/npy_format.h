// The NumPy .npy header of a float32 row-major matrix, both ways: what an
// export writes before its rows and what an import accepts. Writes format
// version 1.0; reads 1.0, 2.0 and 3.0 (numpy picks 2.0 for huge headers).
// The layout is numpy's own (numpy/lib/format.py): magic "\x93NUMPY", the
// version, a little-endian header length, then a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (rows, cols), } padded
// with spaces to a multiple of 64 bytes and ended by '\n'.
//
//   std::string header = NpyHeader(1000, 64);  // Then 1000 * 64 floats.
//   absl::StatusOr<NpyMatrix> matrix = ParseNpyHeader(first_bytes, "a.npy");
//
// Thread-safe (pure functions).
#ifndef CLIENT_CPP_NPY_FORMAT_H_
#define CLIENT_CPP_NPY_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace embedding {

// Longest header ParseNpyHeader reads (numpy refuses longer ones too).
inline constexpr int64_t kMaxNpyHeaderBytes = 1 << 16;

// A float32 C-order 2-D array in a .npy file.
struct NpyMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  // Where the rows start: the size of the header.
  int64_t data_offset = 0;
  // rows * cols * 4 (checked against overflow).
  int64_t data_bytes = 0;
};

// The header of a [rows, cols] '<f4' C-order array, format version 1.0.
std::string NpyHeader(int64_t rows, int64_t cols);

// The header of a [count] '<i8' array (a .npz file's ids), version 1.0.
std::string NpyIdsHeader(int64_t count);

// Parses the header at the start of `bytes` (the file's first bytes, at
// least the whole header when the file has one). INVALID_ARGUMENT naming
// `path` and what is wrong: no .npy magic, an unknown format version, a
// truncated or malformed header, a dtype other than little-endian float32,
// Fortran order, or a shape that is not 2-D.
absl::StatusOr<NpyMatrix> ParseNpyHeader(absl::string_view bytes,
                                         absl::string_view path);
// As ParseNpyHeader, for a 1-D little-endian int64 array (ids): `rows`
// ids, `cols` 1.
absl::StatusOr<NpyMatrix> ParseNpyIdsHeader(absl::string_view bytes,
                                            absl::string_view path);

}  // namespace embedding

#endif  // CLIENT_CPP_NPY_FORMAT_H_
