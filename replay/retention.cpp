#include "rewind/retention.h"

#include <pthread.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include "rewind/compact.h"
#include "rewind/inspect.h"
#include "rewind/journal.h"
#include "rewind/rebase.h"
#include "rewind/segment_index.h"
#include "rewind/units.h"
#include "rewind/write_queue.h"

namespace rwd {

Retention::Retention(Volume& volume, std::string journal_dir, RetentionPolicy policy, Logger logger)
    : volume_(volume),
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

Result<size_t> Retention::run_once(uint64_t now_ns) {
  auto folded = fold(now_ns);
  if (!folded) return folded;
  auto thinned = thin(now_ns);
  if (!thinned) return thinned;
  return *folded + *thinned;
}

Result<size_t> Retention::thin(uint64_t now_ns) {
  const auto m = volume_.snapshot();
  // The coarsest tier with a segment due: old enough for it, not yet that coarse.
  for (size_t t = policy_.coarse.size(); t-- > 0;) {
    const RetentionTier& tier = policy_.coarse[t];
    const auto from =
        static_cast<uint64_t>((t == 0 ? policy_.retain : policy_.coarse[t - 1].age).count());
    if (now_ns < from) continue;
    const auto gran = static_cast<uint64_t>(tier.granularity.count());
    std::vector<size_t> due;
    for (size_t i : compactable_segments(*m, m->checkpoint_seq, gran))
      if (m->segments[i].last_time_ns <= now_ns - from) due.push_back(i);
    if (due.empty()) continue;
    CompactionStats st;
    auto plan = prepare_compaction(dir_, *m, due, gran, logger_, &st);
    if (!plan) return plan.status();
    uint64_t freed = 0;
    Status done = volume_.compact(*plan, &freed);
    if (!done) {
      // Not switched to: the rewrites are nobody's.
      for (size_t i = 0; i < plan->written.size(); ++i)
        if (plan->written[i].file != plan->replaced[i].file) {
          file_system().unlink(segment_path(dir_, plan->written[i].file).c_str());
          file_system().unlink(segment_path(dir_, index_file_name(plan->written[i].file)).c_str());
        }
      return done;
    }
    log_to(logger_, LogLevel::kInfo,
           fmt::format("retention: compacted {} segments ({} .. {}) to one state per {} and "
                       "every mark: {} -> {}",
                       due.size(), format_time(m->segments[due.front()].first_time_ns),
                       format_time(m->segments[due.back()].last_time_ns),
                       format_duration(tier.granularity), format_size(st.bytes_before),
                       format_size(st.bytes_after)));
    return due.size();
  }
  return size_t{0};
}

Result<size_t> Retention::fold(uint64_t now_ns) {
  const auto m = volume_.snapshot();
  // The segments' bytes: sealed ones from the manifest, the open one from its file.
  uint64_t total = 0;
  for (const ManifestSegment& seg : m->segments) {
    if (seg.sealed) {
      total += seg.bytes;
    } else {
      struct stat st {};
      if (::stat(segment_path(dir_, seg.file).c_str(), &st) == 0)
        total += static_cast<uint64_t>(st.st_size);
    }
  }
  // What the policy allows to fold: whole sealed segments, none past the checkpoint.
  size_t by_age = 0, by_size = 0;
  const uint64_t retain = static_cast<uint64_t>(policy_.horizon().count());
  if (retain > 0 && now_ns > retain)
    while (by_age < m->segments.size() && m->segments[by_age].sealed &&
           m->segments[by_age].last_time_ns + retain <= now_ns)
      ++by_age;
  if (policy_.journal_max > 0 && total > policy_.journal_max) {
    uint64_t left = total;
    while (by_size < m->segments.size() && m->segments[by_size].sealed &&
           left > policy_.journal_max / 4 * 3)
      left -= m->segments[by_size++].bytes;
  }
  const size_t folded =
      std::min(std::max(by_age, by_size), segments_ending_by(*m, m->checkpoint_seq));
  if (folded == 0) return size_t{0};
  auto plan = prepare_rebase(dir_, *m, folded, logger_);
  if (!plan) return plan.status();
  if (plan->folded.empty()) return size_t{0};
  if (by_size > by_age)
    log_to(logger_, LogLevel::kWarning,
           fmt::format("journal {} holds {}, over journal-max={}: giving up the history of seq "
                       "{}..{} ({} .. {}) early; the oldest restorable point is now seq {} ({})",
                       dir_, format_size(total), format_size(policy_.journal_max), m->base_seq + 1,
                       plan->new_base_seq, format_time(m->segments[0].first_time_ns),
                       format_time(plan->new_base_time_ns), plan->new_base_seq,
                       format_time(plan->new_base_time_ns)));
  uint64_t freed = 0;
  Status st = volume_.rebase(*plan, &freed);
  if (!st) {
    // Not switched to: the new base is nobody's.
    file_system().unlink(base_path(dir_, plan->new_base_file).c_str());
    return st;
  }
  log_to(logger_, LogLevel::kInfo,
         fmt::format("retention: folded {} segments into the base, now at seq {} ({}); {} freed",
                     plan->folded.size(), plan->new_base_seq, format_time(plan->new_base_time_ns),
                     format_size(freed)));
  return plan->folded.size();
}

}  // namespace rwd
