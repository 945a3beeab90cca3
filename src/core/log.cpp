#include "core/log.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace epcomm::core {

LogLevel parse_log_level(const char* text) {
  if (text == nullptr) return LogLevel::kError;
  std::string s(text);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "warn" || s == "warning" || s == "1") return LogLevel::kWarn;
  if (s == "info" || s == "2") return LogLevel::kInfo;
  if (s == "debug" || s == "3") return LogLevel::kDebug;
  return LogLevel::kError;
}

LogLevel log_level() {
  static const LogLevel level = parse_log_level(std::getenv("EPCOMM_LOG_LEVEL"));
  return level;
}

bool log_enabled(LogLevel level) {
  return static_cast<int>(level) <= static_cast<int>(log_level());
}

void log_message(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  static const char* const kNames[] = {"error", "warn", "info", "debug"};
  std::fprintf(stderr, "[epcomm %s] %s\n", kNames[static_cast<int>(level)], message.c_str());
}

}  // namespace epcomm::core
