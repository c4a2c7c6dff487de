#include "server/service/bounded_parse.h"

#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"

namespace embedding {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;

// What one parsed object costs beyond its payload: a sub-message object, a
// std::string header, an unknown-field record (with its vector's growth).
constexpr int64_t kObjectBytes = 256;
// A repeated numeric element at its largest (int64/double) times 3: an
// array grows by doubling, and while it moves the old and the new copy
// both exist.
constexpr int64_t kRepeatedElementBytes = 3 * 8;
// Deeper than any of our messages and than protobuf's own limit (100).
constexpr int kMaxDepth = 100;

absl::Status Malformed(const Descriptor& type, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed ", type.full_name(), ": ", why));
}

// Counts the varints in the next `length` bytes: each ends with the one
// byte of it whose top bit is clear. Reads through the stream's buffers
// without copying.
bool CountVarints(CodedInputStream& in, int length, int64_t* count) {
  while (length > 0) {
    const void* data;
    int size;
    if (!in.GetDirectBufferPointer(&data, &size)) return false;
    size = std::min(size, length);
    const auto* bytes = static_cast<const uint8_t*>(data);
    *count +=
        std::count_if(bytes, bytes + size, [](uint8_t b) { return b < 0x80; });
    in.Skip(size);
    length -= size;
  }
  return true;
}

bool IsVarintType(const FieldDescriptor& field) {
  return WireFormatLite::WireTypeForFieldType(
             static_cast<WireFormatLite::FieldType>(field.type())) ==
         WireFormatLite::WIRETYPE_VARINT;
}

class BoundScanner {
 public:
  explicit BoundScanner(CodedInputStream* in) : in_(*in) {}

  // Adds to bytes_ what the message that fills the rest of the current
  // limit will cost.
  absl::Status Scan(const Descriptor& type, int depth) {
    if (depth > kMaxDepth) return Malformed(type, "nested too deeply");
    bytes_ += kObjectBytes;
    while (true) {
      const uint32_t tag = in_.ReadTag();
      if (tag == 0) {
        // The end of the message, or a zero or unreadable tag.
        if (!in_.ConsumedEntireMessage()) {
          return Malformed(type, "bad field tag");
        }
        return absl::OkStatus();
      }
      const int number = WireFormatLite::GetTagFieldNumber(tag);
      const FieldDescriptor* field = type.FindFieldByNumber(number);
      EMBEDDING_RETURN_IF_ERROR(ScanField(type, field, tag, depth));
    }
  }

  int64_t bytes() const { return bytes_; }

 private:
  absl::Status ScanField(const Descriptor& type, const FieldDescriptor* field,
                         uint32_t tag, int depth) {
    // Unknown fields are kept (forward compatibility): one record each.
    const bool repeated = field != nullptr && field->is_repeated();
    const int64_t element = field == nullptr ? kObjectBytes
                            : repeated       ? kRepeatedElementBytes
                                             : 0;
    switch (WireFormatLite::GetTagWireType(tag)) {
      case WireFormatLite::WIRETYPE_VARINT: {
        uint64_t ignored;
        if (!in_.ReadVarint64(&ignored)) return Malformed(type, "bad varint");
        bytes_ += element;
        return absl::OkStatus();
      }
      case WireFormatLite::WIRETYPE_FIXED32:
        if (!in_.Skip(4)) return Malformed(type, "truncated");
        bytes_ += element;
        return absl::OkStatus();
      case WireFormatLite::WIRETYPE_FIXED64:
        if (!in_.Skip(8)) return Malformed(type, "truncated");
        bytes_ += element;
        return absl::OkStatus();
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED:
        return ScanLengthDelimited(type, field, depth);
      default:  // Groups: none in our protocol.
        return Malformed(type, "unsupported wire type");
    }
  }

  absl::Status ScanLengthDelimited(const Descriptor& type,
                                   const FieldDescriptor* field, int depth) {
    uint32_t length;
    if (!in_.ReadVarint32(&length) ||
        static_cast<int64_t>(length) > in_.BytesUntilLimit()) {
      return Malformed(type, "bad length");
    }
    const int size = static_cast<int>(length);
    if (field != nullptr && field->type() == FieldDescriptor::TYPE_MESSAGE) {
      const CodedInputStream::Limit limit = in_.PushLimit(size);
      EMBEDDING_RETURN_IF_ERROR(Scan(*field->message_type(), depth + 1));
      in_.PopLimit(limit);
      return absl::OkStatus();
    }
    if (field != nullptr && field->is_packable()) {
      // A packed array.
      int64_t count = 0;
      if (IsVarintType(*field)) {
        if (!CountVarints(in_, size, &count)) {
          return Malformed(type, "truncated");
        }
      } else {
        if (!in_.Skip(size)) return Malformed(type, "truncated");
        count = size / 4;  // Fixed-width elements: 4 or 8 bytes each.
      }
      bytes_ += count * kRepeatedElementBytes;
      return absl::OkStatus();
    }
    // A string, bytes, or an unknown field: its payload plus a header.
    if (!in_.Skip(size)) return Malformed(type, "truncated");
    bytes_ += kObjectBytes + size;
    return absl::OkStatus();
  }

  CodedInputStream& in_;
  int64_t bytes_ = 0;
};

}  // namespace

absl::StatusOr<int64_t> ParsedBytesBound(const grpc::ByteBuffer& raw,
                                         const Descriptor& type) {
  grpc::ByteBuffer copy(raw);  // Shares the slices: no bytes copied.
  grpc::ProtoBufferReader reader(&copy);
  CodedInputStream in(&reader);
  // A limit at the end, so that every length is checked against what is
  // left (BytesUntilLimit is -1 without one).
  in.PushLimit(static_cast<int>(raw.Length()));
  BoundScanner scanner(&in);
  EMBEDDING_RETURN_IF_ERROR(scanner.Scan(type, /*depth=*/0));
  return scanner.bytes();
}

absl::StatusOr<InflightBytes> ParseBounded(const grpc::ByteBuffer& raw,
                                           google::protobuf::Message* message,
                                           InflightMemory* memory) {
  const Descriptor& type = *message->GetDescriptor();
  EMBEDDING_ASSIGN_OR_RETURN(const int64_t bound, ParsedBytesBound(raw, type));
  const int64_t raw_bytes = static_cast<int64_t>(raw.Length());
  InflightBytes held;
  if (memory != nullptr) {
    EMBEDDING_ASSIGN_OR_RETURN(
        held, memory->Reserve(bound + raw_bytes,
                              absl::StrCat("parsing a ", type.full_name())));
  }
  grpc::ByteBuffer copy(raw);
  grpc::ProtoBufferReader reader(&copy);
  if (!message->ParseFromZeroCopyStream(&reader)) {
    return Malformed(type, "the message does not parse");
  }
  held.ShrinkTo(static_cast<int64_t>(message->SpaceUsedLong()) + raw_bytes);
  return held;
}

}  // namespace embedding
