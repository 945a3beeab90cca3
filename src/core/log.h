// Logger. The level comes from EPCOMM_LOG_LEVEL (error, warn, info, debug; default error),
// read once. info shows buffer sizes, topology and timeouts.
#pragma once

#include <string>

namespace epcomm::core {

enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// Parses "error", "warn", "info", "debug" (any case) or a digit 0-3; nullptr or unknown: error.
LogLevel parse_log_level(const char* text);
LogLevel log_level();
bool log_enabled(LogLevel level);
// Writes "[epcomm <level>] <message>" to stderr when the level is enabled.
void log_message(LogLevel level, const std::string& message);

}  // namespace epcomm::core
