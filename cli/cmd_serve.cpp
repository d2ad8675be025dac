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
  const bool in_bucket = is_s3_uri(o.journal);
  auto keys = load_keys(o.remote);
  if (!keys) return report("serve", keys.status(), {}, kExitUsage);
  // A volume on a log server is fetched as stored, sealed or not, into a private
  // directory that lives as long as the export.
  std::unique_ptr<FetchedVolume> fetched;
  if (is_remote_uri(o.journal)) {
    auto f = FetchedVolume::fetch(o.journal, o.remote, *keys);
    if (!f) return report("serve", f.status());
    fetched = std::move(*f);
  }
  std::shared_ptr<BucketCache> bucket;
  if (in_bucket) {
    auto cache = open_bucket(o.journal, o.remote, 0, {});
    if (!cache) return report("serve", cache.status());
    bucket = std::move(*cache);
  }
  const std::string dir = bucket ? bucket->dir() : fetched ? fetched->dir() : o.journal;
  auto h = JournalHistory::load(dir, !bucket && !fetched, {});
  if (!h) return report("serve", h.status(), bucket || fetched ? "" : journal_hint(h.status()));
  if (h->sealed() && keys->empty())
    return report("serve",
                  Status::invalid(fmt::format("{} is sealed (shipped with ship-key=)", o.journal)),
                  "give its key file with --key", kExitUsage);
  std::string note;
  auto seq = h->resolve(*target, &note);
  if (!seq) return report("serve", seq.status());
  std::string sock = o.socket.empty()
                         ? fmt::format("/tmp/rewind-{}-seq{}.sock",
                                       volume_id_hex(h->manifest().volume_id).substr(0, 8), *seq)
                         : o.socket;
  bucket.reset();  // the plugin keeps a cache of its own
  std::string journal = in_bucket ? o.journal : std::filesystem::absolute(dir).string();
  std::vector<std::string> args = {"nbdkit",
                                   "-f",
                                   "-r",
                                   "-U",
                                   sock,
                                   plugin_path(),
                                   "journal=" + journal,
                                   fmt::format("seq={}", *seq)};
  if (in_bucket && !o.cache_size.empty()) args.push_back("cache-size=" + o.cache_size);
  // A fetched copy has no image beside it.
  if (fetched) args.push_back("image-reads=off");
  for (const SealKey& k : keys->keys())
    args.push_back("key=@" + std::filesystem::absolute(k.file).string());
  // The plugin finds the bucket as the AWS tools do; what was given here goes along.
  if (!o.remote.endpoint.empty()) ::setenv("AWS_ENDPOINT_URL", o.remote.endpoint.c_str(), 1);
  if (!o.remote.region.empty()) ::setenv("AWS_REGION", o.remote.region.c_str(), 1);
  if (!o.remote.ca.empty()) ::setenv("AWS_CA_BUNDLE", o.remote.ca.c_str(), 1);
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
