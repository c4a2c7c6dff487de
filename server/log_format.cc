#include "server/log_format.h"

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "spdlog/pattern_formatter.h"

namespace embedding {

void AppendJsonEscaped(absl::string_view text, std::string& out) {
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x",
                        static_cast<unsigned char>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
}

void JsonLogFormatter::format(const spdlog::details::log_msg& msg,
                              spdlog::memory_buf_t& dest) {
  std::string line = absl::StrCat(
      "{\"time\":\"",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromChrono(msg.time),
                       absl::UTCTimeZone()),
      "\",\"level\":\"");
  const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
  AppendJsonEscaped(absl::string_view(level.data(), level.size()), line);
  line += "\",\"logger\":\"";
  AppendJsonEscaped(
      absl::string_view(msg.logger_name.data(), msg.logger_name.size()), line);
  line += "\",\"message\":\"";
  AppendJsonEscaped(absl::string_view(msg.payload.data(), msg.payload.size()),
                    line);
  line += "\"}\n";
  dest.append(line.data(), line.data() + line.size());
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const {
  return std::make_unique<JsonLogFormatter>();
}

absl::Status SetLogFormat(spdlog::logger& logger, absl::string_view format) {
  if (format == "text") return absl::OkStatus();
  if (format == "json") {
    logger.set_formatter(std::make_unique<JsonLogFormatter>());
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--log_format must be text or json, got \"", format, "\""));
}

}  // namespace embedding
