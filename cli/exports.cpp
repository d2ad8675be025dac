#include "exports.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

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

Result<std::unique_ptr<NbdkitChild>> NbdkitChild::start(
    const std::string& socket, bool writable, const std::vector<std::string>& plugin_args) {
  std::vector<std::string> args = {"nbdkit", "-f", "-U", socket};
  // Writes go to the cow filter's overlay; the plugin below it is opened read-only.
  args.push_back(writable ? "--filter=cow" : "-r");
  args.push_back(plugin_path());
  args.insert(args.end(), plugin_args.begin(), plugin_args.end());
  ::unlink(socket.c_str());
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return Status::io_error("cannot start nbdkit", errno);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp("nbdkit", argv.data());
    fmt::print(stderr, "rewind: cannot run nbdkit: {}; install it (scripts/install-deps.sh)\n",
               std::strerror(errno));
    ::_exit(127);
  }
  std::unique_ptr<NbdkitChild> child(new NbdkitChild(pid, socket));
  for (int i = 0; i < 600 && ::access(socket.c_str(), F_OK) != 0; ++i) {
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      child->pid_ = -1;
      return Status::io_error("nbdkit exited before serving; see its message above", EIO);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (::access(socket.c_str(), F_OK) != 0)
    return Status::io_error(fmt::format("nbdkit did not make {} within 30s", socket), ETIMEDOUT);
  return child;
}

bool NbdkitChild::wait() {
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

std::string NbdkitChild::uri() const {
  return "nbd+unix:///?socket=" + socket_;
}

NbdkitChild::~NbdkitChild() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ::unlink(socket_.c_str());
}

}  // namespace rwd::cli
