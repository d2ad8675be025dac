// The subcommands of the `rewind` tool: each declares its options in setup_*() (all in
// options.cpp, which with main.cpp are the only files that include CLI11) and does its
// work in run_*(), which returns the exit status (0 success, 1 failure or corruption
// found, 2 usage error). The work itself lives in the libraries.
#pragma once

#include <functional>
#include <string>

#include "rewind/base/status.h"
#include "rewind/format/seal.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/target.h"
#include "rewind/ship/bucket_reader.h"
#include "rewind/ship/ship_client.h"

namespace CLI {
class App;
}

namespace rwd::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Prints "rewind CMD: message" (and "; hint" if given) to stderr; returns `exit_code`.
int report(const char* cmd, const Status& st, const std::string& hint = {},
           int exit_code = kExitFailure);

// For a journal given as rewind://HOST[:PORT]/VOLUME (a volume on a log server) or
// s3://BUCKET/PREFIX (a volume in object storage).
struct RemoteCliOptions {
  std::string token;  // default: $REWIND_TOKEN
  std::string ca;     // CA certificate the server's must chain to (none: plain TCP)
  std::string server_name;
  std::string endpoint;           // s3://: default $AWS_ENDPOINT_URL, else AWS's
  std::string region;             // s3://: default $AWS_REGION, else us-east-1
  std::vector<std::string> keys;  // --key FILE: key files of a sealed copy
};
void add_remote_options(CLI::App& app, RemoteCliOptions& r);
// The key files --key gave (none: an empty keyring).
Result<Keyring> load_keys(const RemoteCliOptions& r);
// A sealed volume on a log server, fetched as stored into a private temporary
// directory (removed when this is destroyed), to be read as a journal with the keys.
// A private directory (mode 0700, mkdtemp) named PREFIX.XXXXXX under $TMPDIR, else
// under `fallback`; removed, with what is in it, when this is destroyed.
class TempDir {
 public:
  static Result<TempDir> make(const std::string& prefix, const char* fallback = "/tmp");
  TempDir(TempDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string p) : path_(std::move(p)) {}
  std::string path_;
};
class FetchedVolume {
 public:
  // Every sealed record is opened with `keys` once fetched (open_sealed_copy).
  static Result<std::unique_ptr<FetchedVolume>> fetch(const std::string& uri,
                                                      const RemoteCliOptions& r,
                                                      const Keyring& keys);
  const std::string& dir() const { return dir_; }

 private:
  explicit FetchedVolume(TempDir top) : top_(std::move(top)) {}
  TempDir top_;
  std::string dir_;
};
// The volume in the bucket an s3:// URI names, opened through a local cache
// (BucketCache) of at most `cache_limit` bytes (0: no limit).
Result<std::shared_ptr<BucketCache>> open_bucket(const std::string& uri, const RemoteCliOptions& r,
                                                 uint64_t cache_limit, const Logger& logger);
// The link to the log server a rewind:// URI names.
Result<ShipOptions> remote_link(const std::string& uri, const RemoteCliOptions& r);
// What a journal directory, or a rewind:// URI, holds (inspect_journal).
Result<JournalReport> report_of(const std::string& journal, bool scan, const RemoteCliOptions& r);

struct KeygenOptions {
  std::string file;
};
void setup_keygen(CLI::App& app, KeygenOptions& o);
int run_keygen(const KeygenOptions& o);

struct InitOptions {
  std::string image;
  std::string journal;
  std::string size;
};
void setup_init(CLI::App& app, InitOptions& o);
int run_init(const InitOptions& o);

struct InfoOptions {
  std::string journal;
  RemoteCliOptions remote;
  bool json = false;
  std::string journal_max;  // for the forecast: the plugin's journal-max=
};
void setup_info(CLI::App& app, InfoOptions& o);
int run_info(const InfoOptions& o);

struct LogOptions {
  std::string journal;
  RemoteCliOptions remote;
  bool json = false;
};
void setup_log(CLI::App& app, LogOptions& o);
int run_log(const LogOptions& o);

// --at / --seq / --mark, shared by the commands that take a target.
struct TargetOptions {
  std::string at, seq, mark;
};
void add_target_options(CLI::App& app, TargetOptions& t);

// A point given as one option value: "seq:N", "mark:NAME" or a time.
Result<Target> parse_point(const std::string& text);

struct RestoreCmdOptions {
  std::string journal;
  RemoteCliOptions remote;
  TargetOptions target;
  std::string out;
  std::string to;
  bool force = false;
  bool no_image_reads = false;
};
void setup_restore(CLI::App& app, RestoreCmdOptions& o);
int run_restore(const RestoreCmdOptions& o);

struct VerifyOptions {
  std::string journal;
  RemoteCliOptions remote;
  std::string image;
};
void setup_verify(CLI::App& app, VerifyOptions& o);
int run_verify(const VerifyOptions& o);

struct DiffOptions {
  std::string journal;
  RemoteCliOptions remote;
  std::string from, to;
  bool json = false;
};
void setup_diff(CLI::App& app, DiffOptions& o);
int run_diff(const DiffOptions& o);

struct ServeOptions {
  std::string journal;
  RemoteCliOptions remote;
  std::string cache_size;
  TargetOptions target;
  std::string socket;
  bool writable = false;
  std::string overlay;  // --overlay FILE: the writable export's overlay, kept
};
void setup_serve(CLI::App& app, ServeOptions& o);
int run_serve(const ServeOptions& o);

struct BisectOptions {
  std::string journal;
  RemoteCliOptions remote;
  std::string cache_size;
  std::string good, bad;
  std::string run;
  bool json = false;
};
void setup_bisect(CLI::App& app, BisectOptions& o);
int run_bisect(const BisectOptions& o);

struct MarkOptions {
  std::string journal;
  std::string name;
  std::string socket;
  std::vector<std::string> with;  // more volumes: one group mark at one cut
  std::string hold_max = "2s";    // how long a group mark may hold new writes at most
  std::string freeze;             // qga:SOCKET
  std::string freeze_timeout = "10s";
  std::string thaw_wait = "60s";  // after an unanswered freeze
  std::string pre, post;          // hooks run around the mark
};
void setup_mark(CLI::App& app, MarkOptions& o);
int run_mark(const MarkOptions& o);

struct RebaseOptions {
  std::string journal;
  std::string before;
};
void setup_rebase(CLI::App& app, RebaseOptions& o);
int run_rebase(const RebaseOptions& o);

struct CompactOptions {
  std::string journal;
  std::string before;
  std::string granularity = "1m";
};
void setup_compact(CLI::App& app, CompactOptions& o);
int run_compact(const CompactOptions& o);

struct RetainOptions {
  std::string journal;
  RemoteCliOptions remote;
  std::string retain, retain_coarse, journal_max;
};
void setup_retain(CLI::App& app, RetainOptions& o);
int run_retain(const RetainOptions& o);

// A progress line on stderr when it is a terminal (bytes done, rate, time left);
// nothing otherwise.
std::function<void(uint64_t, uint64_t)> progress_bar(const char* what);

// Hint for a journal directory that cannot be read.
std::string journal_hint(const Status& st);

}  // namespace rwd::cli
