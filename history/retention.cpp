#include "rewind/history/retention.h"

#include <pthread.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include "rewind/base/clock.h"
#include "rewind/base/units.h"
#include "rewind/format/segment_index.h"
#include "rewind/history/compact.h"
#include "rewind/history/rebase.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/inspect.h"

namespace rwd {

Retention::Retention(JournalOwner& owner, std::string journal_dir, RetentionPolicy policy,
                     Logger logger)
    : owner_(owner),
      dir_(std::move(journal_dir)),
      policy_(policy),
      logger_(std::move(logger)),
      thread_([this] {
        ::pthread_setname_np(::pthread_self(), "rewind-retain");
        loop();
      }) {}

Retention::~Retention() {
  stop();
}

void Retention::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Retention::loop() {
  for (;;) {
    {
      std::unique_lock lk(mu_);
      if (cv_.wait_for(lk, policy_.interval, [&] { return stopping_; })) return;
    }
    auto folded = run_once(wall_clock_ns());
    if (!folded)
      log_to(
          logger_, LogLevel::kWarning,
          fmt::format("retention: {}; trying again in {} s", folded.status().message(),
                      std::chrono::duration_cast<std::chrono::seconds>(policy_.interval).count()));
  }
}

Result<std::vector<RetentionTier>> parse_retention_tiers(std::string_view text) {
  std::vector<RetentionTier> tiers;
  const std::string_view hint = "give AGE:GRANULARITY,... e.g. 1d:1m,30d:1h";
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos)
      return Status::invalid(fmt::format("tier '{}' has no ':'; {}", item, hint));
    auto age = parse_duration(item.substr(0, colon));
    if (!age) return age.status().with_context(fmt::format("age of tier '{}'", item));
    auto gran = parse_duration(item.substr(colon + 1));
    if (!gran) return gran.status().with_context(fmt::format("granularity of tier '{}'", item));
    if (gran->count() <= 0 || *gran >= *age)
      return Status::invalid(fmt::format(
          "tier '{}': the granularity must be longer than 0 and shorter than the age", item));
    if (!tiers.empty() && (*age <= tiers.back().age || *gran <= tiers.back().granularity))
      return Status::invalid(fmt::format(
          "tier '{}' must be older and coarser than the tier before it; {}", item, hint));
    tiers.push_back(RetentionTier{*age, *gran});
  }
  if (tiers.empty()) return Status::invalid(fmt::format("no tiers; {}", hint));
  return tiers;
}

namespace {

// Compacts the segments the coarsest due tier thins (see Retention::run_once).
Result<size_t> thin(JournalOwner& owner, const std::string& dir, const RetentionPolicy& policy,
                    uint64_t now_ns, const Logger& logger, RetentionCounters& counters) {
  const auto m = owner.snapshot();
  // The coarsest tier with a segment due: old enough for it, not yet that coarse.
  for (size_t t = policy.coarse.size(); t-- > 0;) {
    const RetentionTier& tier = policy.coarse[t];
    const auto from =
        static_cast<uint64_t>((t == 0 ? policy.retain : policy.coarse[t - 1].age).count());
    if (now_ns < from) continue;
    const auto gran = static_cast<uint64_t>(tier.granularity.count());
    std::vector<size_t> due;
    // Segments the log server lacks are kept as they are until it has them.
    const uint64_t upto = std::min(m->checkpoint_seq, m->shipped_seq.value_or(m->checkpoint_seq));
    for (size_t i : compactable_segments(*m, upto, gran))
      if (m->segments[i].last_time_ns <= now_ns - from) due.push_back(i);
    if (due.empty()) continue;
    CompactionStats st;
    auto plan = prepare_compaction(dir, *m, due, gran, logger, &st);
    if (!plan) return plan.status();
    uint64_t freed = 0;
    Status done = owner.commit(*plan, &freed);
    if (!done) {
      // Not switched to: the rewrites are nobody's.
      for (size_t i = 0; i < plan->written.size(); ++i)
        if (plan->written[i].file != plan->replaced[i].file) {
          file_system().unlink(segment_path(dir, plan->written[i].file).c_str());
          file_system().unlink(segment_path(dir, index_file_name(plan->written[i].file)).c_str());
        }
      return done;
    }
    log_to(logger, LogLevel::kInfo,
           fmt::format("retention: compacted {} segments ({} .. {}) to one state per {} and "
                       "every mark: {} -> {}",
                       due.size(), format_time(m->segments[due.front()].first_time_ns),
                       format_time(m->segments[due.back()].last_time_ns),
                       format_duration(tier.granularity), format_size(st.bytes_before),
                       format_size(st.bytes_after)));
    counters.compactions.add();
    counters.segments_compacted.add(due.size());
    return due.size();
  }
  return size_t{0};
}

// Folds what the policy gives up into the base.
Result<size_t> fold(JournalOwner& owner, const std::string& dir, const RetentionPolicy& policy,
                    uint64_t now_ns, const Logger& logger, RetentionCounters& counters) {
  const auto m = owner.snapshot();
  // The segments' bytes: sealed ones from the manifest, the open one from its file.
  uint64_t total = 0;
  for (const ManifestSegment& seg : m->segments) {
    if (seg.sealed) {
      total += seg.bytes;
    } else {
      struct stat st {};
      if (::stat(segment_path(dir, seg.file).c_str(), &st) == 0)
        total += static_cast<uint64_t>(st.st_size);
    }
  }
  // What the policy allows to fold: whole sealed segments, none past the checkpoint.
  size_t by_age = 0, by_size = 0;
  const uint64_t retain = static_cast<uint64_t>(policy.horizon().count());
  if (retain > 0 && now_ns > retain)
    while (by_age < m->segments.size() && m->segments[by_age].sealed &&
           m->segments[by_age].last_time_ns + retain <= now_ns)
      ++by_age;
  if (policy.journal_max > 0 && total > policy.journal_max) {
    uint64_t left = total;
    while (by_size < m->segments.size() && m->segments[by_size].sealed &&
           left > policy.journal_max / 4 * 3)
      left -= m->segments[by_size++].bytes;
  }
  const size_t wanted =
      std::min(std::max(by_age, by_size), segments_ending_by(*m, m->checkpoint_seq));
  // Segments the log server lacks are kept until it has them, whatever the policy.
  const size_t folded =
      m->shipped_seq ? std::min(wanted, segments_ending_by(*m, *m->shipped_seq)) : wanted;
  if (folded < wanted && by_size > by_age)
    log_to(logger, LogLevel::kWarning,
           fmt::format("journal {} holds {}, over journal-max={}, but the log server has records "
                       "up to seq {} only: the segments after it are kept until it has them",
                       dir, format_size(total), format_size(policy.journal_max), *m->shipped_seq));
  if (folded == 0) return size_t{0};
  auto plan = prepare_rebase(dir, *m, folded, logger);
  if (!plan) return plan.status();
  if (plan->folded.empty()) {
    // A base must be an exact state. With coalesce=on, a client that never flushes
    // leaves none: say so, rather than let the journal outgrow its limit in silence.
    if (by_size > by_age)
      log_to(logger, LogLevel::kWarning,
             fmt::format("journal {} holds {}, over journal-max={}, but no sealed segment ends at "
                         "an exact state to fold to (writes were coalesced and no FLUSH came "
                         "after them); it folds once the client flushes",
                         dir, format_size(total), format_size(policy.journal_max)));
    return size_t{0};
  }
  if (by_size > by_age)
    log_to(logger, LogLevel::kWarning,
           fmt::format("journal {} holds {}, over journal-max={}: giving up the history of seq "
                       "{}..{} ({} .. {}) early; the oldest restorable point is now seq {} ({})",
                       dir, format_size(total), format_size(policy.journal_max), m->base_seq + 1,
                       plan->new_base_seq, format_time(m->segments[0].first_time_ns),
                       format_time(plan->new_base_time_ns), plan->new_base_seq,
                       format_time(plan->new_base_time_ns)));
  uint64_t freed = 0;
  Status st = owner.commit(*plan, &freed);
  if (!st) {
    // Not switched to: the new base is nobody's.
    file_system().unlink(base_path(dir, plan->new_base_file).c_str());
    return st;
  }
  log_to(logger, LogLevel::kInfo,
         fmt::format("retention: folded {} segments into the base, now at seq {} ({}); {} freed",
                     plan->folded.size(), plan->new_base_seq, format_time(plan->new_base_time_ns),
                     format_size(freed)));
  counters.folds.add();
  counters.segments_folded.add(plan->folded.size());
  if (by_size > by_age) {
    // The history folded that the time policy would have kept: all of it without one.
    const uint64_t kept_from = retain > 0 && now_ns > retain ? now_ns - retain : 0;
    const uint64_t from = std::max(m->base_time_ns, kept_from);
    counters.forced_folds.add();
    if (plan->new_base_time_ns > from) counters.given_up_ns.add(plan->new_base_time_ns - from);
  }
  return plan->folded.size();
}

// A stopped journal, locked: the switches are committed here.
class StoppedJournal : public JournalOwner {
 public:
  StoppedJournal(std::string dir, Manifest m)
      : dir_(std::move(dir)), m_(std::make_shared<const Manifest>(std::move(m))) {}
  std::shared_ptr<const Manifest> snapshot() const override { return m_; }
  Status commit(const HistoryChange& change, uint64_t* freed) override {
    auto next = commit_change(dir_, *m_, change, freed);
    if (!next) return next.status();
    m_ = std::make_shared<const Manifest>(std::move(*next));
    return Status::ok();
  }

 private:
  std::string dir_;
  std::shared_ptr<const Manifest> m_;
};

}  // namespace

Status check_retention_policy(const RetentionPolicy& policy) {
  if (!policy.coarse.empty() && policy.retain >= policy.coarse.front().age)
    return Status::invalid(fmt::format(
        "retain {} is not shorter than the first retain-coarse tier's age ({}): every write is "
        "kept for retain, and the tiers thin out what is older; lower retain or raise the "
        "tier's age",
        format_duration(policy.retain), format_duration(policy.coarse.front().age)));
  return Status::ok();
}

Result<size_t> retention_pass(JournalOwner& owner, const std::string& dir,
                              const RetentionPolicy& policy, uint64_t now_ns, const Logger& logger,
                              RetentionCounters* counters) {
  RetentionCounters unused;
  RetentionCounters& c = counters ? *counters : unused;
  auto folded = fold(owner, dir, policy, now_ns, logger, c);
  if (!folded) return folded;
  auto thinned = thin(owner, dir, policy, now_ns, logger, c);
  if (!thinned) return thinned;
  return *folded + *thinned;
}

Result<size_t> Retention::run_once(uint64_t now_ns) {
  auto changed = retention_pass(owner_, dir_, policy_, now_ns, logger_, &counters_);
  if (!changed) counters_.failures.add();
  return changed;
}

Result<size_t> apply_retention(const std::string& journal_dir, const RetentionPolicy& policy,
                               uint64_t now_ns, const Logger& logger) {
  auto locked = lock_for_change(journal_dir, logger);
  if (!locked) return locked.status();
  StoppedJournal stopped(journal_dir, locked->history->manifest());
  size_t total = 0;
  for (;;) {
    auto changed = retention_pass(stopped, journal_dir, policy, now_ns, logger);
    if (!changed) return changed;
    if (*changed == 0) return total;
    total += *changed;
  }
}

}  // namespace rwd
