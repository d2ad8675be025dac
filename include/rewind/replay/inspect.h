// Inspection of a journal directory for `rewind info` and `rewind log`: what the
// manifest says, and optionally what scanning every record finds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/format/manifest.h"

namespace rwd {

struct SegmentReport {
  std::string file;
  bool sealed = false;
  bool scanned = false;  // counts by type below are known only when scanned
  uint64_t first_seq = 0, last_seq = 0, records = 0, bytes = 0;
  uint64_t first_time_ns = 0, last_time_ns = 0;
  uint64_t writes = 0, zeroes = 0, trims = 0, marks = 0;
  uint64_t flush_points = 0;  // records a FLUSH, FUA request or mark waited for
  uint64_t coalesced = 0;     // superseded WRITE and ZERO records (coalesce=on), not counted above
  uint64_t compacted = 0;  // records rewritten by compaction (those left empty not counted above)
  uint64_t granularity_ns = 0;  // of the last compaction (0: none)
  uint64_t bytes_written = 0, bytes_zeroed = 0, bytes_trimmed = 0;
  // WRITE records stored compressed (compress=zstd), the bytes they cover and the bytes
  // they take (payloads only).
  uint64_t compressed = 0, compressed_bytes = 0, compressed_stored = 0;
  std::optional<std::string> torn_tail;  // open segment of a running or crashed server
};

struct MarkReport {
  std::string name;
  uint64_t seq = 0, time_ns = 0;
  // A group mark (rewind mark --with): the group's id and its volumes' ids.
  std::string group;
  std::vector<std::string> group_volumes;
};

// The segments compacted to one granularity (0: not compacted, every write kept).
struct TierReport {
  uint64_t granularity_ns = 0;
  uint64_t segments = 0, bytes = 0;
  uint64_t first_time_ns = 0, last_time_ns = 0;
};

struct JournalReport {
  std::string dir;
  Manifest manifest;
  std::vector<SegmentReport> segments;
  std::vector<MarkReport> marks;  // found only when scanned
  bool in_use = false;            // a server holds the journal's lock
  uint64_t base_bytes = 0;        // apparent size of the base snapshot
  uint64_t base_allocated = 0;    // bytes the base snapshot occupies on disk

  uint64_t first_seq() const { return manifest.base_seq; }
  uint64_t last_seq() const;
  uint64_t last_time_ns() const;
  uint64_t records() const;
  uint64_t journal_bytes() const;
  // The segments by granularity, finest first.
  std::vector<TierReport> tiers() const;
};

// Reads the manifest of `dir` and reports its segments. With `scan_records` (and
// always for the open segment of a running server) counts records by type, from the
// segment indexes (rebuilt if missing) and the open segment's records.
Result<JournalReport> inspect_journal(const std::string& dir, bool scan_records);

// RFC 3339 in UTC with milliseconds: 2026-11-25T10:00:03.250Z
std::string format_time(uint64_t time_ns);

}  // namespace rwd
