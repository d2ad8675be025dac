#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "commands.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/view.h"
#include "rewind/volume/write_queue.h"

namespace rwd::cli {

void setup_serve(CLI::App& app, ServeOptions& o) {
  app.add_option("journal", o.journal, "Journal directory")->required();
  add_target_options(app, o.target);
  app.add_option("--socket", o.socket,
                 "UNIX socket to serve on (default: /tmp/rewind-VOLUME-seqN.sock)");
}

namespace {

pid_t g_child = -1;
void forward(int sig) {
  if (g_child > 0) ::kill(g_child, sig);
}

// The plugin: $REWIND_PLUGIN, else beside this tool in the build tree, else the
// installed plugin by its short name.
std::string plugin_path() {
  if (const char* env = ::getenv("REWIND_PLUGIN")) return env;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto p = exe.parent_path().parent_path() / "nbdkit-plugin" / "nbdkit-rewind-plugin.so";
    if (std::filesystem::exists(p)) return p.string();
  }
  return "rewind";
}

}  // namespace

int run_serve(const ServeOptions& o) {
  auto target = make_target(o.target.at, o.target.seq, o.target.mark, wall_clock_ns());
  if (!target) return report("serve", target.status(), {}, kExitUsage);
  auto h = JournalHistory::load(o.journal, true, {});
  if (!h) return report("serve", h.status(), journal_hint(h.status()));
  std::string note;
  auto seq = h->resolve(*target, &note);
  if (!seq) return report("serve", seq.status());
  std::string sock = o.socket.empty()
                         ? fmt::format("/tmp/rewind-{}-seq{}.sock",
                                       volume_id_hex(h->manifest().volume_id).substr(0, 8), *seq)
                         : o.socket;
  std::string journal = std::filesystem::absolute(o.journal).string();
  std::vector<std::string> args = {"nbdkit",
                                   "-f",
                                   "-r",
                                   "-U",
                                   sock,
                                   plugin_path(),
                                   "journal=" + journal,
                                   fmt::format("seq={}", *seq)};
  ::unlink(sock.c_str());
  g_child = ::fork();
  if (g_child < 0) return report("serve", Status::io_error("cannot start nbdkit", errno));
  if (g_child == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp("nbdkit", argv.data());
    fmt::print(stderr,
               "rewind serve: cannot run nbdkit: {}; install it (scripts/install-deps.sh)\n",
               std::strerror(errno));
    ::_exit(127);
  }
  ::signal(SIGTERM, forward);
  ::signal(SIGINT, forward);
  for (int i = 0; i < 200 && ::access(sock.c_str(), F_OK) != 0; ++i) {
    int status;
    if (::waitpid(g_child, &status, WNOHANG) == g_child)
      return report("serve",
                    Status::io_error("nbdkit exited before serving; see its message above", EIO));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!note.empty()) fmt::print("{}\n", note);
  fmt::print("serving {} read-only as it was at seq {}\n", o.journal, *seq);
  fmt::print("nbd+unix:///?socket={}\n", sock);
  std::fflush(stdout);
  int status = 0;
  while (::waitpid(g_child, &status, 0) < 0 && errno == EINTR) {
  }
  ::unlink(sock.c_str());
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? kExitOk : kExitFailure;
}

}  // namespace rwd::cli
