#include "exports.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/stat.h>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace rwd::cli {

namespace {

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

pid_t g_forward_to = -1;
void forward(int sig) {
  if (g_forward_to > 0) ::kill(g_forward_to, sig);
}

}  // namespace

Result<std::unique_ptr<ServableVolume>> ServableVolume::open(const std::string& loc,
                                                             const RemoteCliOptions& r,
                                                             const std::string& cache_size,
                                                             std::string* hint, int* exit_code) {
  const bool in_bucket = is_s3_uri(loc);
  *exit_code = kExitFailure;
  auto keys = load_keys(r);
  if (!keys) {
    *exit_code = kExitUsage;
    return keys.status();
  }
  // A volume on a log server is fetched as stored, sealed or not, into a private
  // directory that lives as long as this.
  std::unique_ptr<FetchedVolume> fetched;
  if (is_remote_uri(loc)) {
    auto f = FetchedVolume::fetch(loc, r, *keys);
    if (!f) return f.status();
    fetched = std::move(*f);
  }
  std::shared_ptr<BucketCache> bucket;  // the plugin keeps a cache of its own
  if (in_bucket) {
    auto cache = open_bucket(loc, r, 0, {});
    if (!cache) return cache.status();
    bucket = std::move(*cache);
  }
  const std::string dir = bucket ? bucket->dir() : fetched ? fetched->dir() : loc;
  auto h = JournalHistory::load(dir, !bucket && !fetched, {});
  if (!h) {
    if (!bucket && !fetched) *hint = journal_hint(h.status());
    return h.status();
  }
  if (h->sealed() && keys->empty()) {
    *hint = "give its key file with --key";
    *exit_code = kExitUsage;
    return Status::invalid(fmt::format("{} is sealed (shipped with ship-key=)", loc));
  }
  std::unique_ptr<ServableVolume> v(new ServableVolume(std::move(*h)));
  v->fetched_ = std::move(fetched);
  v->journal_ = in_bucket ? loc : std::filesystem::absolute(dir).string();
  if (in_bucket) v->cache_size_ = cache_size;
  for (const SealKey& k : keys->keys())
    v->key_files_.push_back(std::filesystem::absolute(k.file).string());
  // The plugin finds the bucket as the AWS tools do; what was given here goes along.
  if (!r.endpoint.empty()) ::setenv("AWS_ENDPOINT_URL", r.endpoint.c_str(), 1);
  if (!r.region.empty()) ::setenv("AWS_REGION", r.region.c_str(), 1);
  if (!r.ca.empty()) ::setenv("AWS_CA_BUNDLE", r.ca.c_str(), 1);
  return v;
}

std::vector<std::string> ServableVolume::plugin_args(uint64_t seq) const {
  std::vector<std::string> args = {"journal=" + journal_, fmt::format("seq={}", seq)};
  if (!cache_size_.empty()) args.push_back("cache-size=" + cache_size_);
  if (fetched_) args.push_back("image-reads=off");  // a fetched copy has no image beside it
  for (const std::string& k : key_files_) args.push_back("key=@" + k);
  return args;
}

Result<std::unique_ptr<ServerChild>> ServerChild::start(std::vector<std::string> args,
                                                        const std::string& socket) {
  ::unlink(socket.c_str());
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return Status::io_error(fmt::format("cannot start {}", args[0]), errno);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    fmt::print(stderr, "rewind: cannot run {}: {}; install it (scripts/install-deps.sh)\n", args[0],
               std::strerror(errno));
    ::_exit(127);
  }
  std::unique_ptr<ServerChild> child(new ServerChild(pid, socket));
  for (int i = 0; i < 600 && ::access(socket.c_str(), F_OK) != 0; ++i) {
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      child->pid_ = -1;
      return Status::io_error(
          fmt::format("{} exited before serving; see its message above", args[0]), EIO);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (::access(socket.c_str(), F_OK) != 0)
    return Status::io_error(fmt::format("{} did not make {} within 30s", args[0], socket),
                            ETIMEDOUT);
  return child;
}

Result<std::unique_ptr<ServerChild>> ServerChild::nbdkit(
    const std::string& socket, bool writable, const std::vector<std::string>& plugin_args) {
  std::vector<std::string> args = {"nbdkit", "-f", "-U", socket};
  // Writes go to the cow filter's overlay; the plugin below it is opened read-only.
  args.push_back(writable ? "--filter=cow" : "-r");
  args.push_back(plugin_path());
  args.insert(args.end(), plugin_args.begin(), plugin_args.end());
  return start(std::move(args), socket);
}

bool ServerChild::wait() {
  g_forward_to = pid_;
  ::signal(SIGTERM, forward);
  ::signal(SIGINT, forward);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  g_forward_to = -1;
  pid_ = -1;
  ::unlink(socket_.c_str());
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string ServerChild::uri() const {
  return "nbd+unix:///?socket=" + socket_;
}

ServerChild::~ServerChild() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ::unlink(socket_.c_str());
}

namespace {

// Runs a program to its end: its standard output, or an error with what it said.
Result<std::string> run_program(std::vector<std::string> args) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Status::io_error("pipe", errno);
  const pid_t pid = ::fork();
  if (pid < 0) return Status::io_error(fmt::format("cannot start {}", args[0]), errno);
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    fmt::print(stderr, "cannot run {}: {}; install it (scripts/install-deps.sh)", args[0],
               std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return text;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const size_t nl = text.rfind('\n');
  return Status::io_error(
      fmt::format("{} failed: {}", args[0], nl == std::string::npos ? text : text.substr(nl + 1)),
      EIO);
}

// The name of the read-only export's socket under a kept overlay, which its qcow2
// header keeps as the backing file: it names the point, so that the overlay is never
// put over another.
std::string point_socket_name(const std::string& volume_hex, uint64_t seq) {
  return fmt::format("rewind-{}-seq{}.sock", volume_hex, seq);
}

}  // namespace

Result<std::unique_ptr<OverlayExport>> OverlayExport::start(
    const std::string& socket, const std::string& overlay, const std::string& volume_hex,
    uint64_t seq, const std::vector<std::string>& plugin_args) {
  auto dir = TempDir::make("rewind-overlay");
  if (!dir) return dir.status();
  std::unique_ptr<OverlayExport> e(new OverlayExport(std::move(*dir)));
  const std::string inner = e->dir_.path() + "/" + point_socket_name(volume_hex, seq);
  auto point = ServerChild::nbdkit(inner, false, plugin_args);
  if (!point) return point.status();
  e->point_ = std::move(*point);
  const std::string backing = e->point_->uri();
  std::error_code ec;
  if (std::filesystem::exists(overlay, ec)) {
    // An overlay of an earlier export: only of this point, and then put over it anew.
    auto info = run_program({"qemu-img", "info", "-U", "--output=json", overlay});
    if (!info) return info.status();
    auto j = nlohmann::json::parse(*info, nullptr, false);
    const std::string format = j.is_object() ? j.value("format", "") : "";
    const std::string was = j.is_object() ? j.value("backing-filename", "") : "";
    if (format != "qcow2")
      return Status::invalid(fmt::format(
          "--overlay {} is not a qcow2 overlay made by rewind serve (it is {}); give a new "
          "file name",
          overlay, format.empty() ? "unreadable" : format));
    const std::string want = "/" + point_socket_name(volume_hex, seq);
    if (!was.ends_with(want)) {
      const size_t slash = was.rfind('/');
      return Status::invalid(fmt::format(
          "--overlay {} was made over another point ({}), not volume {} at seq {}; serve that "
          "point with it, or give a new file name",
          overlay, slash == std::string::npos ? was : was.substr(slash + 1), volume_hex, seq));
    }
    auto r = run_program(
        {"qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", backing, overlay});
    if (!r) return r.status();
  } else {
    auto r = run_program(
        {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, overlay});
    if (!r) return r.status();
    ::chmod(overlay.c_str(), 0600);  // what the clone writes is the volume's data
  }
  auto served = ServerChild::start({"qemu-nbd", "--persistent", "--shared=8", "--discard=unmap",
                                    "--cache=writeback", "-f", "qcow2", "-k", socket, overlay},
                                   socket);
  if (!served) return served.status();
  e->served_ = std::move(*served);
  return e;
}

OverlayExport::~OverlayExport() {
  served_.reset();  // qemu-nbd first: it writes the overlay's last metadata on exit
  point_.reset();   // then nbdkit, before its socket's directory goes
}

}  // namespace rwd::cli
