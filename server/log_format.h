// The server's log line format (--log_format): "text", spdlog's default
// pattern, or "json", one object per line for log collectors:
//
//   {"time":"2026-11-27T13:12:15.241059Z","level":"info",
//    "logger":"embedding_server","message":"listening on port 50051 ..."}
//
//   EMBEDDING_RETURN_IF_ERROR(SetLogFormat(*logger, "json"));
//
// Messages are JSON-escaped (quotes, backslashes, control characters;
// other bytes pass through, so UTF-8 stays UTF-8). Thread-safe as spdlog's
// formatters are (each sink formats under its own lock).
#ifndef SERVER_LOG_FORMAT_H_
#define SERVER_LOG_FORMAT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/formatter.h"
#include "spdlog/logger.h"

namespace embedding {

// Formats each record as one JSON object.
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg,
              spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Appends `text` to `out` as the inside of a JSON string.
void AppendJsonEscaped(absl::string_view text, std::string& out);

// Sets `logger`'s format: "text" or "json"; INVALID_ARGUMENT naming
// --log_format for anything else.
absl::Status SetLogFormat(spdlog::logger& logger, absl::string_view format);

}  // namespace embedding

#endif  // SERVER_LOG_FORMAT_H_
