// The .npy header both ways: NpyHeader writes exactly what numpy.save
// writes, and ParseNpyHeader refuses every file that is not a float32
// C-order matrix with INVALID_ARGUMENT naming the file and the problem.
#include "client/cpp/npy_format.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace embedding {
namespace {

constexpr char kPath[] = "t.npy";

// A header of format `major`.0 around the dict text `dict`.
std::string Header(const std::string& dict, int major = 1) {
  std::string header("\x93NUMPY", 6);
  header.push_back(static_cast<char>(major));
  header.push_back('\0');
  const std::string text = dict + "\n";
  const int length_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < length_bytes; ++i) {
    header.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
  }
  return header + text;
}

absl::Status ParseError(const std::string& bytes) {
  return ParseNpyHeader(bytes, kPath).status();
}

TEST(NpyHeaderTest, IsByteForByteWhatNumpySaveWrites) {
  // numpy 1.24: np.lib.format.write_array_header_1_0 of a (3, 4) '<f4'
  // array (what np.save writes before the data).
  const std::string numpy =
      std::string("\x93NUMPY\x01\x00v\x00", 10) +
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" +
      std::string(58, ' ') + "\n";
  EXPECT_EQ(NpyHeader(3, 4), numpy);
  EXPECT_EQ(NpyHeader(3, 4).size(), 128u);
  // The data stays 64-byte aligned whatever the digits.
  EXPECT_EQ(NpyHeader(int64_t{1} << 40, 100000).size() % 64, 0u);
}

TEST(NpyHeaderTest, ParsesWhatItWrites) {
  absl::StatusOr<NpyMatrix> matrix = ParseNpyHeader(NpyHeader(1000, 64), kPath);
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  EXPECT_EQ(matrix->rows, 1000);
  EXPECT_EQ(matrix->cols, 64);
  EXPECT_EQ(matrix->data_offset, 128);
  EXPECT_EQ(matrix->data_bytes, 1000 * 64 * 4);
}

TEST(NpyHeaderTest, ParsesVersionsTwoAndThreeAndOtherSpellings) {
  for (int major : {2, 3}) {
    const std::string header = Header(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2), }", major);
    absl::StatusOr<NpyMatrix> matrix = ParseNpyHeader(header, kPath);
    ASSERT_TRUE(matrix.ok()) << matrix.status();
    EXPECT_EQ(matrix->rows, 5);
    EXPECT_EQ(matrix->data_offset, header.size());
  }
  // Keys in another order, double quotes, no trailing comma, Python 2 longs.
  absl::StatusOr<NpyMatrix> matrix =
      ParseNpyHeader(Header("{\"shape\": (7L, 3L), \"fortran_order\": False, "
                            "\"descr\": \"<f4\"}"),
                     kPath);
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  EXPECT_EQ(matrix->rows, 7);
  EXPECT_EQ(matrix->cols, 3);
}

TEST(NpyHeaderTest, EachUnfitFileIsInvalidArgumentNamingTheFile) {
  const struct {
    std::string bytes;
    std::string message;
  } cases[] = {
      {"PK\x03\x04 a zip file",
       "t.npy: not a .npy file (it does not start with \\x93NUMPY)"},
      {"", "t.npy: not a .npy file (it does not start with \\x93NUMPY)"},
      {Header("{}", 4),
       "t.npy: .npy format version 4.0 is not supported "
       "(1.0, 2.0, 3.0 are)"},
      {NpyHeader(3, 4).substr(0, 9), "t.npy: truncated .npy header"},
      {NpyHeader(3, 4).substr(0, 100), "t.npy: truncated .npy header"},
      {Header("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }"),
       "t.npy: dtype <f8 is not little-endian float32 (<f4)"},
      {Header("{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }"),
       "t.npy: dtype >f4 is not little-endian float32 (<f4)"},
      {Header("{'descr': [('a', '<f4')], 'fortran_order': False, "
              "'shape': (3,), }"),
       "t.npy: dtype [('a', '<f4')] is not little-endian float32 (<f4)"},
      {Header("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }"),
       "t.npy: the array is in Fortran (column-major) order; save it in C "
       "order (numpy.ascontiguousarray)"},
      {Header("{'descr': '<f4', 'fortran_order': False, 'shape': (12,), }"),
       "t.npy: shape (12,) is not 2-D (num_embeddings, dim)"},
      {Header("{'descr': '<f4', 'fortran_order': False, "
              "'shape': (2, 3, 2), }"),
       "t.npy: shape (2, 3, 2) is not 2-D (num_embeddings, dim)"},
      {Header("{'descr': '<f4', 'fortran_order': False, "
              "'shape': (4611686018427387904, 4), }"),
       "t.npy: shape (4611686018427387904, 4) is too large"},
      {Header("{'descr': '<f4', 'fortran_order': False}"),
       "t.npy: .npy header has no 'shape'"},
      {Header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)"),
       "t.npy: malformed .npy header: {'descr': '<f4', 'fortran_order': "
       "False, 'shape': (3, 4)"},
  };
  for (const auto& [bytes, message] : cases) {
    SCOPED_TRACE(message);
    const absl::Status status = ParseError(bytes);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), message);
  }
}

}  // namespace
}  // namespace embedding
