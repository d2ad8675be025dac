// The subcommands of the `rewind` tool: each declares its options in setup_*() and
// does its work in run_*(), which returns the exit status (0 success, 1 failure or
// corruption found, 2 usage error). The work itself lives in the libraries.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "rewind/status.h"

namespace rwd::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Prints "rewind CMD: message" (and "; hint" if given) to stderr; returns `exit_code`.
int report(const char* cmd, const Status& st, const std::string& hint = {},
           int exit_code = kExitFailure);

struct InitOptions {
  std::string image;
  std::string journal;
  std::string size;
};
void setup_init(CLI::App& app, InitOptions& o);
int run_init(const InitOptions& o);

struct InfoOptions {
  std::string journal;
  bool json = false;
};
void setup_info(CLI::App& app, InfoOptions& o);
int run_info(const InfoOptions& o);

struct LogOptions {
  std::string journal;
  bool json = false;
};
void setup_log(CLI::App& app, LogOptions& o);
int run_log(const LogOptions& o);

// Hint for a journal directory that cannot be read.
std::string journal_hint(const Status& st);
std::string json_string(std::string_view s);

}  // namespace rwd::cli
