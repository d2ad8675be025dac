#include "rewind/inspect.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include <fmt/format.h>

#include "rewind/file.h"
#include "rewind/format.h"
#include "rewind/journal.h"
#include "rewind/segment.h"

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

std::string format_time(uint64_t time_ns) {
  time_t secs = static_cast<time_t>(time_ns / 1'000'000'000u);
  struct tm tm;
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     time_ns % 1'000'000'000u / 1'000'000u);
}

namespace {

Status scan_segment(const std::string& dir, SegmentReport* s, std::vector<MarkReport>* marks) {
  auto reader = SegmentReader::open(segment_path(dir, s->file), s->sealed);
  if (!reader) return reader.status();
  RecordView rec;
  s->records = 0;
  for (;;) {
    auto more = reader->next(&rec);
    if (!more) return more.status();
    if (!*more) break;
    const RecordHeader& h = rec.header;
    if (s->records == 0) s->first_time_ns = h.time_ns;
    s->last_time_ns = h.time_ns;
    ++s->records;
    switch (h.type) {
      case RecordType::kWrite:
        ++s->writes, s->bytes_written += h.length;
        break;
      case RecordType::kZero:
        ++s->zeroes, s->bytes_zeroed += h.length;
        break;
      case RecordType::kTrim:
        ++s->trims, s->bytes_trimmed += h.length;
        break;
      case RecordType::kMark:
        ++s->marks;
        marks->push_back(MarkReport{
            std::string(reinterpret_cast<const char*>(rec.payload.data()), rec.payload.size()),
            h.seq, h.time_ns});
        break;
      case RecordType::kNone:
        break;
    }
  }
  s->last_seq = s->records == 0 ? s->first_seq - 1 : reader->last_seq();
  if (!s->sealed) s->bytes = reader->end();
  s->torn_tail = reader->torn_tail();
  s->scanned = true;
  return Status::ok();
}

}  // namespace

Result<JournalReport> inspect_journal(const std::string& dir, bool scan_records) {
  JournalReport r;
  r.dir = dir;
  auto m = Manifest::load(dir);
  if (!m) return m.status();
  r.manifest = std::move(*m);

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
    if (scan_records || !ms.sealed) {
      Status scanned = scan_segment(dir, &s, &r.marks);
      if (!scanned) return scanned;
    }
    r.segments.push_back(std::move(s));
  }
  return r;
}

}  // namespace rwd
