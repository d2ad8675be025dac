#include "rewind/retention.h"

#include <pthread.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include "rewind/inspect.h"
#include "rewind/journal.h"
#include "rewind/rebase.h"
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

Result<size_t> Retention::run_once(uint64_t now_ns) {
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
  const uint64_t retain = static_cast<uint64_t>(policy_.retain.count());
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
  const ManifestSegment& last = m->segments[folded - 1];
  if (by_size > by_age)
    log_to(
        logger_, LogLevel::kWarning,
        fmt::format("journal {} holds {}, over journal-max={}: giving up the history of seq "
                    "{}..{} ({} .. {}) early; the oldest restorable point is now seq {} ({})",
                    dir_, format_size(total), format_size(policy_.journal_max), m->base_seq + 1,
                    last.last_seq, format_time(m->segments[0].first_time_ns),
                    format_time(last.last_time_ns), last.last_seq, format_time(last.last_time_ns)));
  auto plan = prepare_rebase(dir_, *m, folded, logger_);
  if (!plan) return plan.status();
  uint64_t freed = 0;
  Status st = volume_.rebase(*plan, &freed);
  if (!st) {
    // Not switched to: the new base is nobody's.
    file_system().unlink(base_path(dir_, plan->new_base_file).c_str());
    return st;
  }
  log_to(logger_, LogLevel::kInfo,
         fmt::format("retention: folded {} segments into the base, now at seq {} ({}); {} freed",
                     folded, plan->new_base_seq, format_time(plan->new_base_time_ns),
                     format_size(freed)));
  return folded;
}

}  // namespace rwd
