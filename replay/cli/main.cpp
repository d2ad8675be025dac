// rewind: the command-line tool for rewind journals. main only wires the
// subcommands together; see commands.h.
#include <cstdio>

#include <fmt/format.h>

#include "commands.h"

namespace rwd::cli {

int report(const char* cmd, const Status& st, const std::string& hint, int exit_code) {
  std::string line = fmt::format("rewind {}: {}", cmd, st.message());
  if (!hint.empty()) line += "; " + hint;
  fmt::print(stderr, "{}\n", line);
  return exit_code;
}

std::string journal_hint(const Status& st) {
  if (st.errno_value() == ENOENT)
    return "is it a rewind journal? (one is created by 'rewind init' or on first serve)";
  return {};
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
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
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += c;
    }
  }
  return out + "\"";
}

}  // namespace rwd::cli

int main(int argc, char** argv) {
  using namespace rwd::cli;
  CLI::App app{
      "rewind: continuous data protection for block devices.\n"
      "Serve a volume with: nbdkit rewind image=DISK.img journal=DIR"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show the help of every subcommand");

  InitOptions init;
  CLI::App* init_cmd =
      app.add_subcommand("init", "Create the journal of a new volume (and its image)");
  setup_init(*init_cmd, init);
  InfoOptions info;
  CLI::App* info_cmd =
      app.add_subcommand("info", "Volume, size, restorable range, segments, bytes");
  setup_info(*info_cmd, info);
  LogOptions log;
  CLI::App* log_cmd = app.add_subcommand("log", "History: segments, marks, time ranges, counts");
  setup_log(*log_cmd, log);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    fmt::print(stderr, "rewind: {}; see 'rewind --help'\n", e.what());
    return kExitUsage;
  }
  if (init_cmd->parsed()) return run_init(init);
  if (info_cmd->parsed()) return run_info(info);
  if (log_cmd->parsed()) return run_log(log);
  return kExitUsage;
}
