#include "client/cpp/npy_format.h"

#include <algorithm>
#include <map>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/checked_math.h"

namespace embedding {
namespace {

constexpr absl::string_view kMagic("\x93NUMPY", 6);
// Magic and version: the fixed part before the header length.
constexpr int64_t kPreambleBytes = 8;
// numpy aligns the data to 64 bytes (format.ARRAY_ALIGN).
constexpr int64_t kAlignment = 64;
// numpy pads the header so the row count can grow in place to this many
// digits (format.GROWTH_AXIS_MAX_DIGITS); matching it makes an export
// byte-identical to numpy.save of the same array.
constexpr int64_t kGrowthDigits = 21;

// A value of the header's dict.
struct Literal {
  enum class Kind { kString, kBool, kIntTuple, kOther };
  Kind kind = Kind::kOther;
  std::string text;  // A string's content, else the source text.
  bool boolean = false;
  std::vector<int64_t> ints;
};

// Parses the Python dict literal numpy writes: string keys; values that are
// strings, True/False, tuples of ints, or anything else with balanced
// brackets (a structured dtype's list), kept as text.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  // False when the text is not one dict followed by whitespace.
  bool ParseDict(std::map<std::string, Literal>* fields) {
    if (!Consume('{')) return false;
    while (!Consume('}')) {
      std::string key;
      Literal value;
      if (!ParseString(&key) || !Consume(':') || !ParseValue(&value)) {
        return false;
      }
      (*fields)[key] = std::move(value);
      if (!Consume(',')) {
        if (!Consume('}')) return false;
        break;
      }
    }
    SkipSpace();
    return pos_ == text_.size();
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() && absl::ascii_isspace(text_[pos_])) ++pos_;
  }

  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  bool ParseString(std::string* out) {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      return false;
    }
    const char quote = text_[pos_++];
    out->clear();
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
      out->push_back(text_[pos_++]);
    }
    return pos_++ < text_.size();  // The closing quote.
  }

  // Skips a value nested anywhere (brackets balanced, strings whole).
  bool SkipValue() {
    SkipSpace();
    int depth = 0;
    std::string ignored;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '\'' || c == '"') {
        if (!ParseString(&ignored)) return false;
        continue;
      }
      if (depth == 0 && (c == ',' || c == '}')) return true;
      if (c == '(' || c == '[' || c == '{') ++depth;
      if (c == ')' || c == ']' || c == '}') {
        if (--depth < 0) return false;
      }
      ++pos_;
    }
    return false;
  }

  bool ParseValue(Literal* out) {
    SkipSpace();
    const size_t begin = pos_;
    if (pos_ < text_.size() && (text_[pos_] == '\'' || text_[pos_] == '"')) {
      out->kind = Literal::Kind::kString;
      return ParseString(&out->text);
    }
    if (!SkipValue()) return false;
    absl::string_view source = text_.substr(begin, pos_ - begin);
    while (!source.empty() && absl::ascii_isspace(source.back())) {
      source.remove_suffix(1);
    }
    out->text = std::string(source);
    if (source == "True" || source == "False") {
      out->kind = Literal::Kind::kBool;
      out->boolean = source == "True";
    } else if (std::optional<std::vector<int64_t>> ints = IntTuple(source)) {
      out->kind = Literal::Kind::kIntTuple;
      out->ints = *std::move(ints);
    }
    return true;
  }

  // "(3, 4)", "(3,)", "()": the ints; nullopt for anything else.
  static std::optional<std::vector<int64_t>> IntTuple(absl::string_view text) {
    if (text.size() < 2 || text.front() != '(' || text.back() != ')') {
      return std::nullopt;
    }
    text = text.substr(1, text.size() - 2);
    std::vector<int64_t> ints;
    while (true) {
      const size_t comma = text.find(',');
      absl::string_view item = text.substr(0, comma);
      while (!item.empty() && absl::ascii_isspace(item.front())) {
        item.remove_prefix(1);
      }
      while (!item.empty() && absl::ascii_isspace(item.back())) {
        item.remove_suffix(1);
      }
      if (!item.empty() && item.back() == 'L') item.remove_suffix(1);  // Py2.
      int64_t value = 0;
      if (!item.empty()) {
        if (!absl::SimpleAtoi(item, &value)) return std::nullopt;
        ints.push_back(value);
      } else if (comma != absl::string_view::npos) {
        return std::nullopt;  // Only "()" and a trailing comma leave one.
      }
      if (comma == absl::string_view::npos) break;
      text.remove_prefix(comma + 1);
    }
    return ints;
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

absl::Status Invalid(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

uint32_t LittleEndian(absl::string_view bytes) {
  uint32_t value = 0;
  for (size_t i = bytes.size(); i-- > 0;) {
    value = value << 8 | static_cast<unsigned char>(bytes[i]);
  }
  return value;
}

// The header of a C-order array of `descr` and `shape` ("(3, 4)"), whose
// first dimension is `rows`.
std::string HeaderOf(absl::string_view descr, absl::string_view shape,
                     int64_t rows) {
  std::string dict =
      absl::StrCat("{'descr': '", descr,
                   "', 'fortran_order': False, 'shape': ", shape, ", }");
  const int64_t row_digits = absl::StrCat(rows).size();
  if (row_digits < kGrowthDigits) dict.append(kGrowthDigits - row_digits, ' ');
  // As numpy: 1 to 64 spaces, so the data starts 64-byte aligned.
  const int64_t unpadded = kPreambleBytes + 2 + dict.size() + 1;
  dict.append(kAlignment - unpadded % kAlignment, ' ');
  dict.push_back('\n');
  std::string header(kMagic);
  header.push_back('\x01');  // Version 1.0.
  header.push_back('\x00');
  header.push_back(static_cast<char>(dict.size() & 0xff));
  header.push_back(static_cast<char>(dict.size() >> 8));
  return header + dict;
}

// What ParseHeader accepts: a dtype and a number of dimensions.
struct ArrayKind {
  absl::string_view descr;      // "<f4"
  absl::string_view dtype;      // "little-endian float32 (<f4)"
  size_t dims;                  // 2
  absl::string_view dims_text;  // "2-D (num_embeddings, dim)"
  int64_t element_bytes;        // 4
};

constexpr ArrayKind kMatrix{"<f4", "little-endian float32 (<f4)", 2,
                            "2-D (num_embeddings, dim)", 4};
constexpr ArrayKind kIds{"<i8", "little-endian int64 (<i8)", 1, "1-D (ids)", 8};

absl::StatusOr<NpyMatrix> ParseHeader(absl::string_view bytes,
                                      absl::string_view path,
                                      const ArrayKind& kind) {
  if (bytes.size() < kMagic.size() ||
      bytes.substr(0, kMagic.size()) != kMagic) {
    return Invalid(path, "not a .npy file (it does not start with \\x93NUMPY)");
  }
  if (bytes.size() < kPreambleBytes) {
    return Invalid(path, "truncated .npy header");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    return Invalid(path, absl::StrCat(".npy format version ", major, ".", minor,
                                      " is not supported (1.0, 2.0, 3.0 are)"));
  }
  // Version 1.0 has a 2-byte header length, later versions 4 bytes.
  const int64_t length_bytes = major == 1 ? 2 : 4;
  if (static_cast<int64_t>(bytes.size()) < kPreambleBytes + length_bytes) {
    return Invalid(path, "truncated .npy header");
  }
  const int64_t header_bytes =
      LittleEndian(bytes.substr(kPreambleBytes, length_bytes));
  const int64_t data_offset = kPreambleBytes + length_bytes + header_bytes;
  if (header_bytes > kMaxNpyHeaderBytes) {
    return Invalid(path, absl::StrCat(".npy header of ", header_bytes,
                                      " bytes is longer than the ",
                                      kMaxNpyHeaderBytes, " allowed"));
  }
  if (static_cast<int64_t>(bytes.size()) < data_offset) {
    return Invalid(path, "truncated .npy header");
  }
  const absl::string_view text =
      bytes.substr(kPreambleBytes + length_bytes, header_bytes);
  std::map<std::string, Literal> fields;
  if (!HeaderParser(text).ParseDict(&fields)) {
    return Invalid(path,
                   absl::StrCat("malformed .npy header: ",
                                absl::StripTrailingAsciiWhitespace(text)));
  }
  for (const char* key : {"descr", "fortran_order", "shape"}) {
    if (!fields.contains(key)) {
      return Invalid(path, absl::StrCat(".npy header has no '", key, "'"));
    }
  }
  const Literal& descr = fields["descr"];
  if (descr.kind != Literal::Kind::kString || descr.text != kind.descr) {
    return Invalid(path,
                   absl::StrCat("dtype ", descr.text, " is not ", kind.dtype));
  }
  const Literal& fortran = fields["fortran_order"];
  if (fortran.kind != Literal::Kind::kBool) {
    return Invalid(path, absl::StrCat("fortran_order ", fortran.text,
                                      " is not True or False"));
  }
  if (fortran.boolean) {
    return Invalid(path,
                   "the array is in Fortran (column-major) order; save it in "
                   "C order (numpy.ascontiguousarray)");
  }
  const Literal& shape = fields["shape"];
  if (shape.kind != Literal::Kind::kIntTuple ||
      shape.ints.size() != kind.dims ||
      std::any_of(shape.ints.begin(), shape.ints.end(),
                  [](int64_t n) { return n < 0; })) {
    return Invalid(
        path, absl::StrCat("shape ", shape.text, " is not ", kind.dims_text));
  }
  NpyMatrix matrix{.rows = shape.ints[0],
                   .cols = kind.dims == 2 ? shape.ints[1] : 1,
                   .data_offset = data_offset};
  const std::optional<int64_t> elements = CheckedMul(matrix.rows, matrix.cols);
  const std::optional<int64_t> data_bytes =
      elements.has_value() ? CheckedMul(*elements, kind.element_bytes)
                           : std::nullopt;
  if (!data_bytes.has_value()) {
    return Invalid(path, absl::StrCat("shape ", shape.text, " is too large"));
  }
  matrix.data_bytes = *data_bytes;
  return matrix;
}

}  // namespace

std::string NpyHeader(int64_t rows, int64_t cols) {
  return HeaderOf("<f4", absl::StrCat("(", rows, ", ", cols, ")"), rows);
}

std::string NpyIdsHeader(int64_t count) {
  return HeaderOf("<i8", absl::StrCat("(", count, ",)"), count);
}

absl::StatusOr<NpyMatrix> ParseNpyHeader(absl::string_view bytes,
                                         absl::string_view path) {
  return ParseHeader(bytes, path, kMatrix);
}

absl::StatusOr<NpyMatrix> ParseNpyIdsHeader(absl::string_view bytes,
                                            absl::string_view path) {
  return ParseHeader(bytes, path, kIds);
}

}  // namespace embedding
