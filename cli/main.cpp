// rewind: the command-line tool for rewind journals. main only wires the
// subcommands together; see commands.h.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "commands.h"
#include "rewind/base/units.h"
#include "rewind/replay/restore.h"

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
  if (st.code() == Status::Code::kBusy)
    return "is the plugin serving it? Stop the server first, or give the plugin the policy "
           "(retain=, retain-coarse=, journal-max=) to apply while it serves";
  if (st.code() == Status::Code::kCorruption)
    return "`rewind verify JOURNAL` lists the damage; `rewind restore` recovers any point "
           "before it";
  return {};
}

void add_target_options(CLI::App& app, TargetOptions& t) {
  app.add_option("--at", t.at,
                 "Every record up to this time: RFC 3339, 'YYYY-MM-DD HH:MM:SS[.frac]' (local), "
                 "-90s/-5m/-2h/-1d, or now");
  app.add_option("--seq", t.seq, "Every record up to this seq");
  app.add_option("--mark", t.mark, "Every record up to and including this mark");
}

void add_remote_options(CLI::App& app, RemoteCliOptions& r) {
  app.add_option("--token", r.token,
                 "For rewind://HOST:PORT/VOLUME: the token the log server grants the volume by "
                 "(default: $REWIND_TOKEN)");
  app.add_option("--ca", r.ca,
                 "For rewind://: the CA certificate (PEM) the server's must chain to; without "
                 "it, TLS verified by the system's trust store, or plain TCP to a loopback "
                 "address only (a server with --insecure-loopback)");
  app.add_option("--server-name", r.server_name,
                 "For rewind://: the name the server's certificate carries (default: HOST)");
  app.add_option("--endpoint", r.endpoint,
                 "For s3://BUCKET/PREFIX: the S3 endpoint, https://HOST[:PORT] (default: "
                 "$AWS_ENDPOINT_URL, else AWS's for the region); credentials as the AWS tools "
                 "find them ($AWS_ACCESS_KEY_ID, ~/.aws/credentials, $AWS_PROFILE); --ca verifies "
                 "its certificate");
  app.add_option("--region", r.region,
                 "For s3://: the region (default: $AWS_REGION, the profile's, else us-east-1)");
  app.add_option("--key", r.keys,
                 "The key file of a sealed copy (shipped with ship-key=; made by rewind keygen); "
                 "give it again for each key a rotation left in use");
}

Result<Keyring> load_keys(const RemoteCliOptions& r) {
  std::vector<SealKey> keys;
  for (const std::string& f : r.keys) {
    auto k = load_key_file(f);
    if (!k) return k.status().with_context("--key");
    keys.push_back(std::move(*k));
  }
  return Keyring(std::move(keys));
}

Result<std::unique_ptr<FetchedVolume>> FetchedVolume::fetch(const std::string& uri,
                                                            const RemoteCliOptions& r,
                                                            const Keyring& keys) {
  auto link = remote_link(uri, r);
  if (!link) return link.status();
  auto top = TempDir::make("rewind-fetch", "/var/tmp");
  if (!top) return top.status();
  std::unique_ptr<FetchedVolume> v(new FetchedVolume(std::move(*top)));
  v->dir_ = v->top_.path() + "/volume";
  if (Status st = remote_fetch(*link, v->dir_); !st) return st;
  if (Status st = open_sealed_copy(v->dir_, keys, false); !st)
    return st.with_context(fmt::format("the copy {} sent", uri));
  return v;
}

Result<TempDir> TempDir::make(const std::string& prefix, const char* fallback) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = fmt::format("{}/{}.XXXXXX", tmp && *tmp ? tmp : fallback, prefix);
  if (::mkdtemp(pattern.data()) == nullptr)
    return Status::io_error(fmt::format("cannot create a directory like {}", pattern), errno);
  return TempDir(std::move(pattern));
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

Result<std::shared_ptr<BucketCache>> open_bucket(const std::string& uri, const RemoteCliOptions& r,
                                                 uint64_t cache_limit, const Logger& logger) {
  auto client = open_bucket_client(uri, r.endpoint, r.region, r.ca);
  if (!client) return client.status();
  BucketReadOptions o;
  o.cache_limit = cache_limit;
  return BucketCache::open(std::move(*client), o, logger);
}

Result<ShipOptions> remote_link(const std::string& uri, const RemoteCliOptions& r) {
  ShipOptions link;
  REWIND_RETURN_IF_ERROR(parse_remote_uri(uri, &link));
  link.token = r.token;
  if (link.token.empty())
    if (const char* env = std::getenv("REWIND_TOKEN")) link.token = env;
  if (link.token.empty())
    return Status::invalid(
        fmt::format("{}: give the volume's token with --token or REWIND_TOKEN", uri));
  link.ca_file = r.ca;
  link.server_name = r.server_name;
  return link;
}

Result<JournalReport> report_of(const std::string& journal, bool scan, const RemoteCliOptions& r) {
  if (is_s3_uri(journal)) {
    auto cache = open_bucket(journal, r, 0, {});
    if (!cache) return cache.status();
    auto report = inspect_journal((*cache)->dir(), scan);
    if (!report) return report.status();
    report->dir = journal;
    report->base_allocated = (*cache)->base_map().data_bytes();
    return report;
  }
  if (!is_remote_uri(journal)) return inspect_journal(journal, scan);
  auto link = remote_link(journal, r);
  if (!link) return link.status();
  return remote_report(*link, scan);
}

std::function<void(uint64_t, uint64_t)> progress_bar(const char* what) {
  if (!::isatty(2)) return {};
  auto start = std::chrono::steady_clock::now();
  auto last = start - std::chrono::seconds(1);
  bool finished = false;
  return [=](uint64_t done, uint64_t total) mutable {
    if (finished) return;
    auto now = std::chrono::steady_clock::now();
    if (done < total && now - last < std::chrono::milliseconds(200)) return;
    last = now;
    double secs = std::chrono::duration<double>(now - start).count();
    double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
    double left = rate > 0 ? static_cast<double>(total - done) / rate : 0;
    finished = done >= total;
    fmt::print(stderr, "\r{}: {} / {}  {}/s  {}   {}", what, rwd::format_size(done),
               rwd::format_size(total), rwd::format_size(static_cast<uint64_t>(rate)),
               finished ? fmt::format("done in {}", rwd::format_duration(std::chrono::nanoseconds(
                                                        static_cast<int64_t>(secs * 1e9))))
                        : rwd::format_duration(
                              std::chrono::nanoseconds(static_cast<int64_t>(left * 1e9))) +
                              " left",
               finished ? "\n" : "");
  };
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

  RestoreCmdOptions restore;
  CLI::App* restore_cmd =
      app.add_subcommand("restore", "Materialise the volume as it was at a target");
  setup_restore(*restore_cmd, restore);
  VerifyOptions verify;
  CLI::App* verify_cmd =
      app.add_subcommand("verify", "Check every checksum, seq continuity, and image == replay");
  setup_verify(*verify_cmd, verify);
  DiffOptions diff;
  CLI::App* diff_cmd = app.add_subcommand("diff", "Extents changed between two points in time");
  setup_diff(*diff_cmd, diff);
  ServeOptions serve;
  CLI::App* serve_cmd = app.add_subcommand(
      "serve", "Serve a point in time over NBD: read-only, or writable into a throwaway overlay");
  setup_serve(*serve_cmd, serve);
  BisectOptions bisect;
  CLI::App* bisect_cmd = app.add_subcommand(
      "bisect", "Find the last good point and the first bad write by running a check on points");
  setup_bisect(*bisect_cmd, bisect);
  MarkOptions mark;
  CLI::App* mark_cmd = app.add_subcommand("mark", "Insert a named mark into a running volume");
  setup_mark(*mark_cmd, mark);
  RebaseOptions rebase;
  CLI::App* rebase_cmd = app.add_subcommand(
      "rebase", "Fold the history before a point into a new base snapshot (stopped volume)");
  setup_rebase(*rebase_cmd, rebase);
  CompactOptions compact;
  CLI::App* compact_cmd = app.add_subcommand(
      "compact",
      "Keep one state per window of time before a point, and every mark (stopped volume)");
  setup_compact(*compact_cmd, compact);
  RetainOptions retain;
  CLI::App* retain_cmd = app.add_subcommand(
      "retain", "Apply a retention policy (retain, tiers, journal-max) to a stopped volume");
  setup_retain(*retain_cmd, retain);

  KeygenOptions keygen;
  CLI::App* keygen_cmd = app.add_subcommand(
      "keygen", "Create a key file for encrypted off-site copies (the plugin's ship-key=)");
  setup_keygen(*keygen_cmd, keygen);

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
  if (restore_cmd->parsed()) return run_restore(restore);
  if (verify_cmd->parsed()) return run_verify(verify);
  if (diff_cmd->parsed()) return run_diff(diff);
  if (serve_cmd->parsed()) return run_serve(serve);
  if (bisect_cmd->parsed()) return run_bisect(bisect);
  if (mark_cmd->parsed()) return run_mark(mark);
  if (rebase_cmd->parsed()) return run_rebase(rebase);
  if (compact_cmd->parsed()) return run_compact(compact);
  if (retain_cmd->parsed()) return run_retain(retain);
  if (keygen_cmd->parsed()) return run_keygen(keygen);
  return kExitUsage;
}
