// rewind bisect: the last good point and the first bad write, by running a check on
// points served writable into a throwaway overlay (replay/bisect.h has the search).
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "commands.h"
#include "exports.h"
#include "rewind/base/json.h"
#include "rewind/replay/bisect.h"
#include "rewind/volume/write_queue.h"

namespace rwd::cli {

namespace {

// The records shown between the last good and the first bad point (all are counted).
constexpr size_t kMaxListed = 1000;

uint64_t time_of(const JournalHistory& h, uint64_t seq) {
  uint64_t t = h.first_time_ns();
  if (seq > h.first_seq())
    h.for_each_entry(seq - 1, seq, [&](const IndexEntry& e, uint32_t) { t = e.time_ns; });
  return t;
}

// Runs `cmd` by /bin/sh -c with the point in its environment; its standard output goes
// to stderr when `to_stderr`. The verdict by its exit status, or an error that stops
// the bisection.
Result<BisectStep> run_check(const std::string& cmd, const std::string& uri, uint64_t seq,
                             uint64_t time_ns, bool to_stderr) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return Status::io_error("cannot start the check", errno);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(255);
    ::setenv("REWIND_URI", uri.c_str(), 1);
    ::setenv("REWIND_SEQ", std::to_string(seq).c_str(), 1);
    ::setenv("REWIND_TIME", format_time(time_ns).c_str(), 1);
    if (to_stderr) ::dup2(2, 1);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  BisectStep step;
  step.seq = seq;
  if (WIFSIGNALED(status))
    return Status::invalid(
        fmt::format("the check was killed by signal {} ({}) at seq {}: the bisection stops",
                    WTERMSIG(status), ::strsignal(WTERMSIG(status)), seq));
  const int code = WEXITSTATUS(status);
  step.detail = fmt::format("exit {}", code);
  if (code == 0)
    step.verdict = Verdict::kGood;
  else if (code == 125)
    step.verdict = Verdict::kSkip;
  else if (code < 128)
    step.verdict = Verdict::kBad;
  else
    return Status::invalid(fmt::format(
        "the check exited {} at seq {} (0 good, 125 skip, 1-127 bad; anything else stops the "
        "bisection)",
        code, seq));
  return step;
}

nlohmann::ordered_json point_json(const JournalHistory& h, uint64_t seq) {
  return {{"seq", seq}, {"time", format_time(time_of(h, seq))}, {"time_ns", time_of(h, seq)}};
}

}  // namespace

int run_bisect(const BisectOptions& o) {
  auto good_t = parse_point(o.good);
  if (!good_t) return report("bisect", good_t.status().with_context("--good"), {}, kExitUsage);
  auto bad_t = o.bad.empty() ? Result<Target>(Target::newest()) : parse_point(o.bad);
  if (!bad_t) return report("bisect", bad_t.status().with_context("--bad"), {}, kExitUsage);
  std::string hint;
  int exit_code = kExitFailure;
  auto v = ServableVolume::open(o.journal, o.remote, o.cache_size, &hint, &exit_code);
  if (!v) return report("bisect", v.status(), hint, exit_code);
  const JournalHistory& h = (*v)->history();
  std::string note;
  auto good = h.resolve(*good_t, &note);
  if (!good) return report("bisect", good.status().with_context("--good"), {}, kExitUsage);
  auto bad = h.resolve(*bad_t, &note);
  if (!bad) return report("bisect", bad.status().with_context("--bad"), {}, kExitUsage);
  if (*good >= *bad)
    return report(
        "bisect",
        Status::invalid(fmt::format("--good (seq {}) is not before --bad (seq {})", *good, *bad)),
        "give a --good point earlier than the --bad one", kExitUsage);
  auto dir = TempDir::make("rewind-bisect");  // for the points' sockets
  if (!dir) return report("bisect", dir.status());
  const std::vector<uint64_t> points = bisect_points(h, *good, *bad);
  std::FILE* out = o.json ? stderr : stdout;
  fmt::print(out,
             "bisecting seq {}..{} of {}: {} points between (flush points and marks), at most "
             "{} checks without skips\n",
             *good, *bad, o.journal, points.size(),
             2 + static_cast<int>(std::ceil(std::log2(static_cast<double>(points.size()) + 1))));
  std::fflush(out);
  const std::string sock = dir->path() + "/point.sock";
  auto check = [&](uint64_t seq) -> Result<BisectStep> {
    const auto started = std::chrono::steady_clock::now();
    auto child = ServerChild::nbdkit(sock, true, (*v)->plugin_args(seq));
    if (!child) return child.status().with_context(fmt::format("serving seq {}", seq));
    auto step = run_check(o.run, (*child)->uri(), seq, time_of(h, seq), o.json);
    child->reset();  // nbdkit stopped before the next point is served
    if (step)
      step->seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return step;
  };
  size_t n = 0;
  auto on_step = [&](const BisectStep& s) {
    fmt::print(out, "step {}: seq {} ({}) {} ({}, {:.1f}s)\n", ++n, s.seq,
               format_time(time_of(h, s.seq)), verdict_name(s.verdict), s.detail, s.seconds);
    std::fflush(out);
  };
  auto r = bisect(points, *good, *bad, check, on_step);
  if (!r) return report("bisect", r.status());

  // What lies between the two points, and the marks around them.
  std::vector<IndexEntry> between;
  size_t total = 0;
  h.for_each_entry(r->last_good, r->first_bad, [&](const IndexEntry& e, uint32_t) {
    if (++total <= kMaxListed) between.push_back(e);
  });
  const MarkInfo* before = nullptr;
  const MarkInfo* after = nullptr;
  for (const MarkInfo& m : h.marks()) {
    if (m.seq <= r->last_good) before = &m;
    if (m.seq >= r->first_bad && !after) after = &m;
  }
  if (o.json) {
    nlohmann::ordered_json j;
    j["last_good_seq"] = r->last_good;
    j["last_good_time"] = format_time(time_of(h, r->last_good));
    j["first_bad_seq"] = r->first_bad;
    j["first_bad_time"] = format_time(time_of(h, r->first_bad));
    j["points"] = points.size();
    j["exact"] = r->skipped.empty();
    j["skipped"] = r->skipped;
    nlohmann::ordered_json steps = nlohmann::ordered_json::array();
    for (const BisectStep& s : r->steps) {
      nlohmann::ordered_json p = point_json(h, s.seq);
      p["verdict"] = verdict_name(s.verdict);
      p["detail"] = s.detail;
      p["seconds"] = s.seconds;
      steps.push_back(std::move(p));
    }
    j["steps"] = std::move(steps);
    nlohmann::ordered_json recs = nlohmann::ordered_json::array();
    for (const IndexEntry& e : between)
      recs.push_back({{"seq", e.seq},
                      {"time", format_time(e.time_ns)},
                      {"type", record_type_name(e.type)},
                      {"offset", e.offset},
                      {"length", e.length}});
    j["records"] = std::move(recs);
    j["records_total"] = total;
    auto mark_json = [&](const MarkInfo* m) -> nlohmann::ordered_json {
      if (!m) return nullptr;
      return {{"name", m->name}, {"seq", m->seq}, {"time", format_time(m->time_ns)}};
    };
    j["mark_before"] = mark_json(before);
    j["mark_after"] = mark_json(after);
    fmt::print("{}\n", json_text(j));
    return kExitOk;
  }
  fmt::print("last good: seq {} ({})\n", r->last_good, format_time(time_of(h, r->last_good)));
  fmt::print("first bad: seq {} ({})\n", r->first_bad, format_time(time_of(h, r->first_bad)));
  if (!r->skipped.empty())
    fmt::print("not exact: the check skipped {} point(s) between them (seq {})\n",
               r->skipped.size(), fmt::join(r->skipped, ", "));
  fmt::print("{} record(s) after the last good point, up to the first bad one:\n", total);
  for (const IndexEntry& e : between)
    fmt::print("  seq {} {} {} offset {} length {}\n", e.seq, format_time(e.time_ns),
               record_type_name(e.type), e.offset, e.length);
  if (total > between.size()) fmt::print("  ... and {} more\n", total - between.size());
  if (before)
    fmt::print("mark before: {} (seq {}, {})\n", before->name, before->seq,
               format_time(before->time_ns));
  if (after)
    fmt::print("mark after: {} (seq {}, {})\n", after->name, after->seq,
               format_time(after->time_ns));
  return kExitOk;
}

}  // namespace rwd::cli
