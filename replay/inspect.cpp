#include "rewind/replay/inspect.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/format/format.h"
#include "rewind/format/segment_index.h"
#include "rewind/journal/journal.h"

namespace rwd {

using format::RecordType;

uint64_t JournalReport::last_seq() const {
  for (auto it = segments.rbegin(); it != segments.rend(); ++it)
    if (it->records > 0) return it->last_seq;
  return manifest.base_seq;
}

uint64_t JournalReport::last_time_ns() const {
  for (auto it = segments.rbegin(); it != segments.rend(); ++it)
    if (it->records > 0) return it->last_time_ns;
  return manifest.base_time_ns;
}

uint64_t JournalReport::records() const {
  uint64_t n = 0;
  for (const SegmentReport& s : segments) n += s.records;
  return n;
}

uint64_t JournalReport::journal_bytes() const {
  uint64_t n = 0;
  for (const SegmentReport& s : segments) n += s.bytes;
  return n;
}

std::vector<TierReport> JournalReport::tiers() const {
  std::vector<TierReport> out;
  for (const SegmentReport& s : segments) {
    auto it = std::find_if(out.begin(), out.end(), [&](const TierReport& t) {
      return t.granularity_ns == s.granularity_ns;
    });
    if (it == out.end()) {
      out.push_back(TierReport{s.granularity_ns});
      it = out.end() - 1;
    }
    ++it->segments;
    it->bytes += s.bytes;
    if (s.records == 0) continue;
    if (it->first_time_ns == 0 || s.first_time_ns < it->first_time_ns)
      it->first_time_ns = s.first_time_ns;
    it->last_time_ns = std::max(it->last_time_ns, s.last_time_ns);
  }
  std::sort(out.begin(), out.end(), [](const TierReport& a, const TierReport& b) {
    return a.granularity_ns < b.granularity_ns;
  });
  return out;
}

std::string format_time(uint64_t time_ns) {
  time_t secs = static_cast<time_t>(time_ns / 1'000'000'000u);
  struct tm tm;
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     time_ns % 1'000'000'000u / 1'000'000u);
}

namespace {

// Counts by type, from the segment's index (rebuilt if need be) or, for the open
// segment, from its records.
Status scan_segment(const std::string& dir, const Manifest& m, const ManifestSegment& ms,
                    SegmentReport* s, std::vector<MarkReport>* marks) {
  auto loaded = load_segment_entries(dir, m.volume_id, ms, true, {});
  if (!loaded) return loaded.status();
  const std::vector<IndexEntry>& es = loaded->entries;
  s->records = es.size();
  for (const IndexEntry& e : es) {
    if (e.flags & format::kFlagFlushPoint) ++s->flush_points;
    if (e.flags & format::kFlagCompacted) ++s->compacted;
    if (e.flags & format::kFlagSuperseded) {
      if (!(e.flags & format::kFlagCompacted)) ++s->coalesced;
      continue;
    }
    switch (e.type) {
      case RecordType::kWrite:
        ++s->writes, s->bytes_written += e.length;
        if (e.codec != format::Codec::kNone)
          ++s->compressed, s->compressed_bytes += e.length,
              s->compressed_stored += e.payload_length;
        break;
      case RecordType::kZero:
        ++s->zeroes, s->bytes_zeroed += e.length;
        break;
      case RecordType::kTrim:
        ++s->trims, s->bytes_trimmed += e.length;
        break;
      case RecordType::kMark: {
        ++s->marks;
        auto mark = read_mark(dir, ms, e);
        if (!mark) return mark.status();
        marks->push_back(MarkReport{mark->name, e.seq, e.time_ns, mark->group, mark->volumes});
        break;
      }
      case RecordType::kNone:
        break;
    }
  }
  if (!es.empty()) {
    s->first_time_ns = es.front().time_ns;
    s->last_time_ns = es.back().time_ns;
    s->last_seq = es.back().seq;
    if (!ms.sealed) s->bytes = es.back().position + format::record_span(es.back().payload_length);
  } else {
    s->last_seq = s->first_seq - 1;
    if (!ms.sealed) s->bytes = format::kSegmentHeaderSize;
  }
  s->torn_tail = loaded->torn_tail;
  s->scanned = true;
  return Status::ok();
}

}  // namespace

namespace {

Result<JournalReport> inspect_once(const std::string& dir, Manifest manifest, bool scan_records) {
  JournalReport r;
  r.dir = dir;
  r.manifest = std::move(manifest);

  auto lock = File::open(join_path(dir, format::kLockName), O_RDONLY);
  if (lock && ::flock(lock->fd(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) r.in_use = true;

  struct stat st;
  if (::stat(base_path(dir, r.manifest.base_file).c_str(), &st) != 0)
    return Status::io_error(fmt::format("base snapshot {} of {}", r.manifest.base_file, dir),
                            errno);
  r.base_bytes = static_cast<uint64_t>(st.st_size);
  r.base_allocated = static_cast<uint64_t>(st.st_blocks) * 512;

  for (const ManifestSegment& ms : r.manifest.segments) {
    SegmentReport s;
    s.file = ms.file;
    s.sealed = ms.sealed;
    s.first_seq = ms.first_seq;
    s.last_seq = ms.last_seq;
    s.records = ms.records;
    s.bytes = ms.bytes;
    s.first_time_ns = ms.first_time_ns;
    s.last_time_ns = ms.last_time_ns;
    s.granularity_ns = ms.granularity_ns;
    if (scan_records || !ms.sealed) {
      Status scanned = scan_segment(dir, r.manifest, ms, &s, &r.marks);
      if (!scanned) return scanned;
    }
    r.segments.push_back(std::move(s));
  }
  return r;
}

}  // namespace

Result<JournalReport> inspect_journal(const std::string& dir, bool scan_records) {
  auto m = Manifest::load(dir);
  if (!m) return m.status();
  // A served volume's retention may switch the manifest to a new base or fewer
  // segments and remove the old files while they are read: a file the manifest names
  // that is gone means a newer manifest, which is read again (a few times at most).
  for (int attempt = 0;; ++attempt) {
    auto r = inspect_once(dir, *m, scan_records);
    if (r || r.status().errno_value() != ENOENT || attempt == 4) return r;
    auto again = Manifest::load(dir);
    if (!again) return again.status();
    if (*again == *m) return r;  // not a race: the file is missing
    m = std::move(again);
  }
}

}  // namespace rwd
