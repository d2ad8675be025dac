// Where the libraries report what they did: the plugin routes it to nbdkit's log,
// the CLI to stderr, tests to a string.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace rwd {

enum class LogLevel { kDebug, kInfo, kWarning, kError };
using Logger = std::function<void(LogLevel, const std::string&)>;

inline void log_to(const Logger& logger, LogLevel level, const std::string& msg) {
  if (logger) logger(level, msg);
}

// `text` safe to put in a log line: control characters, DEL and bytes above 0x7e as
// \xNN (and a backslash as \\), so that input from a peer (a volume name, a message)
// can neither forge lines nor move a terminal's cursor.
std::string printable(std::string_view text);

}  // namespace rwd
