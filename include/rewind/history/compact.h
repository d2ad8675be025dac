// Compaction: thins old history out to one exact state per window of time, keeping
// every mark exact, so that rewrites of the same bytes stop costing journal space.
// docs/FORMAT.md ("Compaction") gives the rules and the steps.
//
// A window is the records whose times fall in (k*G, (k+1)*G] for the granularity G
// (so a restore at the boundary (k+1)*G selects the window's last record), cut short
// after every mark and at the end of the segments compacted. Within a window only the
// newest version of each byte survives: records keep their seq and time, but their
// ranges and data are rewritten so that each byte the window wrote is stored once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/target.h"

namespace rwd {

struct CompactionStats {
  uint64_t segments = 0;  // segments compacted (rewritten or found compact already)
  uint64_t segments_rewritten = 0;
  uint64_t windows = 0;          // windows in those segments
  uint64_t windows_changed = 0;  // windows in which some bytes were overwritten
  // Windows left as they were because their surviving pieces need more records than
  // the window has (rare: many small holes punched into large writes).
  uint64_t windows_kept = 0;
  uint64_t marks = 0;                        // marks in those segments, all kept exact
  uint64_t records_superseded = 0;           // records left with no data
  uint64_t records_trimmed = 0;              // records left with part of their range, or moved
  uint64_t data_before = 0, data_after = 0;  // payload bytes of WRITE records
  // Zeroes written as data to join pieces (counted in data_after), for windows with
  // more pieces than records otherwise.
  uint64_t zero_data = 0;
  uint64_t bytes_before = 0, bytes_after = 0;  // segment file bytes
};

// Step 1 of a compaction: for the segments of `m` at the indexes `segments` (in
// order; each sealed, at or before the checkpoint), writes each one that changes as a
// new segment file (synced) and returns the plan that commit_compaction() (or
// Volume::compact() while serving) then switches to. Reads only those segments, so it
// may run beside a serving volume.
Result<CompactionPlan> prepare_compaction(const std::string& journal_dir, const Manifest& m,
                                          const std::vector<size_t>& segments,
                                          uint64_t granularity_ns, const Logger& logger,
                                          CompactionStats* stats);

// The segments of `m` a compaction at `granularity_ns` would rewrite: sealed, whose
// records all lie at or before `upto_seq` and the checkpoint, and not yet compacted
// to this granularity or a coarser one.
std::vector<size_t> compactable_segments(const Manifest& m, uint64_t upto_seq,
                                         uint64_t granularity_ns);

struct CompactResult {
  CompactionStats stats;
  uint64_t bytes_freed = 0;
  std::string note;  // why less than asked was compacted, if it was
};

// Compacts the whole sealed segments that end at or before `before` (the journal
// must not be in use; it is locked for the duration). A crash at any moment leaves
// the old segments or their rewrites, both whole, and nothing that the next start
// or rebase does not remove.
Result<CompactResult> compact(const std::string& journal_dir, const Target& before,
                              uint64_t granularity_ns, const Logger& logger);

}  // namespace rwd
