// Where the libraries report what they did: the plugin routes it to nbdkit's log,
// the CLI to stderr, tests to a string.
#pragma once

#include <functional>
#include <string>

namespace rwd {

enum class LogLevel { kDebug, kInfo, kWarning, kError };
using Logger = std::function<void(LogLevel, const std::string&)>;

inline void log_to(const Logger& logger, LogLevel level, const std::string& msg) {
  if (logger) logger(level, msg);
}

}  // namespace rwd
