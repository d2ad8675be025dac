// Retention: keeps a served volume's journal within a policy by folding its oldest
// whole segments into the base snapshot, and compacting the ones a coarse tier
// thins, while writes go on (docs/FORMAT.md, "Rebase" and "Compaction"). A thread of
// its own decides and writes the new base or segments from sealed segments; the
// flusher only switches the manifest (Volume::rebase, Volume::compact).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rewind/base/log.h"
#include "rewind/base/metrics.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/journal/journal.h"
#include "rewind/journal/journal_owner.h"

namespace rwd {

// One coarse tier: history up to `age` old keeps one exact state per `granularity`
// (and every mark).
struct RetentionTier {
  std::chrono::nanoseconds age{0};
  std::chrono::nanoseconds granularity{0};
  bool operator==(const RetentionTier&) const = default;
};

// Parses retain-coarse= ("1d:1m,30d:1h"): ages and granularities both rising, each
// granularity shorter than its age.
Result<std::vector<RetentionTier>> parse_retention_tiers(std::string_view text);

struct RetentionPolicy {
  // Keep every write at least this long (0: no time limit, or none past `coarse`).
  std::chrono::nanoseconds retain{0};
  // After `retain`, thinner history: each tier applies from the age of the one before
  // (the first from `retain`) up to its own age, past the last of which history is
  // folded into the base.
  std::vector<RetentionTier> coarse;
  // Hard limit on the segments' bytes (0: none). When the journal grows past it, the
  // oldest segments are folded until it is back under three quarters of it, however
  // recent, and the history given up is logged as a warning.
  uint64_t journal_max = 0;
  // How often the policy is checked.
  std::chrono::nanoseconds interval = std::chrono::seconds(1);

  bool active() const { return retain.count() > 0 || journal_max > 0 || !coarse.empty(); }
  // How old history may grow before it is folded into the base (0: forever).
  std::chrono::nanoseconds horizon() const { return coarse.empty() ? retain : coarse.back().age; }
};

// Checks that the parts of a policy fit together: retain shorter than the first
// coarse tier's age.
Status check_retention_policy(const RetentionPolicy& policy);

// What retention did, for metrics= (docs/METRICS.md).
struct RetentionCounters {
  Counter folds, segments_folded;           // rebases, and the segments they folded
  Counter compactions, segments_compacted;  // a coarse tier's thinning
  Counter forced_folds;                     // folds journal-max forced
  Counter given_up_ns;                      // history they folded that retain= would keep
  Counter failures;                         // passes that failed (tried again later)
};

// One check of `policy` at `now_ns`: folds what the policy gives up, if anything,
// then compacts what a coarse tier thins out (one tier per check, the coarsest due
// first). Returns the segments folded or compacted, and counts into `counters`.
Result<size_t> retention_pass(JournalOwner& owner, const std::string& journal_dir,
                              const RetentionPolicy& policy, uint64_t now_ns, const Logger& logger,
                              RetentionCounters* counters = nullptr);

// `rewind retain`: the policy applied to a stopped journal (locked meanwhile) at
// `now_ns`, pass after pass until nothing more is due. Returns the segments changed.
Result<size_t> apply_retention(const std::string& journal_dir, const RetentionPolicy& policy,
                               uint64_t now_ns, const Logger& logger);

class Retention {
 public:
  // Starts the thread (rewind-retain) for `owner`, a served volume, whose journal is
  // `journal_dir`.
  Retention(JournalOwner& owner, std::string journal_dir, RetentionPolicy policy, Logger logger);
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;
  ~Retention();

  // Stops the thread, waiting for a rebase under way to end. Call before closing the
  // volume.
  void stop();
  // One retention_pass() at `now_ns`, in the caller's thread.
  Result<size_t> run_once(uint64_t now_ns);
  const RetentionCounters& counters() const { return counters_; }

 private:
  void loop();

  JournalOwner& owner_;
  const std::string dir_;
  const RetentionPolicy policy_;
  Logger logger_;
  RetentionCounters counters_;
  std::mutex mu_;  // guards stopping_
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace rwd
