// Rebase: folds the oldest history of a volume into a new base snapshot, so that the
// journal stops growing without bound. docs/FORMAT.md ("Rebase") gives the steps and
// why a crash at any of them loses no restorable point.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rewind/base/file.h"
#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/target.h"
#include "rewind/replay/view.h"

namespace rwd {

struct RebaseResult {
  uint64_t old_base_seq = 0;
  uint64_t new_base_seq = 0;  // == old_base_seq when there was nothing to fold
  uint64_t new_base_time_ns = 0;
  uint64_t segments_removed = 0;
  uint64_t bytes_freed = 0;              // disk space of the segments, indexes and old base
  std::vector<std::string> marks_given;  // marks before the new base, no longer listed
  std::string note;                      // why less than asked was folded, if it was
};

// Step 1 of a rebase (docs/FORMAT.md, "Rebase"): writes the state after the first
// `folded` segments of `m` (sealed, and at or before its checkpoint) as the new base
// snapshot base/<seq>.img, synced, and returns the plan that commit_rebase() (or
// Volume::rebase() while serving) then switches to. Folds fewer segments if the last
// ones end where the state is not exact, and none (an empty plan) if none ends where
// it is. Reads only those segments and the
// old base, so it may run beside a serving volume.
Result<RebasePlan> prepare_rebase(const std::string& journal_dir, const Manifest& m, size_t folded,
                                  const Logger& logger);

// A stopped journal opened for a change of its history (rebase, compact): locked,
// what an interrupted change left removed, its records loaded.
struct LockedJournal {
  File lock;
  std::shared_ptr<const JournalHistory> history;
};
// A journal in use by a running server is a kBusy error.
Result<LockedJournal> lock_for_change(const std::string& journal_dir, const Logger& logger);

// The last seq a change of the history up to `before` may touch: the seq it resolves
// to (the base seq for a time before the first record), but never past the checkpoint,
// whose later records start-up may need to redo, nor past the shipped position of a
// volume shipped to a log server (*note then says so).
Result<uint64_t> last_seq_to_change(const JournalHistory& history, const Target& before,
                                    std::string* note);

// Folds every record at or before `before` into a new base snapshot and removes the
// segments and the base snapshot it replaces. Only whole sealed segments are folded:
// the new base sits at the end of the last segment that ends at or before the target
// (and never after the image's checkpoint, whose later records start-up may need to
// redo). The journal must not be in use (it is locked for the duration). A crash at
// any moment leaves either the old volume or the new one, both whole; what it leaves
// over is removed by the next rebase or start of the plugin.
Result<RebaseResult> rebase(const std::string& journal_dir, const Target& before,
                            const Logger& logger);

}  // namespace rwd
