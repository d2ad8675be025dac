#include "rewind/journal/journal_tail.h"

#include <fcntl.h>

#include <fmt/format.h>

#include "rewind/format/file_names.h"
#include "rewind/format/format.h"
#include "rewind/format/record.h"

namespace rwd {

long segment_for(const Manifest& m, uint64_t seq) {
  if (seq <= m.base_seq) return -1;
  for (size_t i = 0; i < m.segments.size(); ++i) {
    const ManifestSegment& s = m.segments[i];
    if (s.first_seq <= seq && (!s.sealed || seq <= s.last_seq)) return static_cast<long>(i);
  }
  return m.segments.empty() ? -1 : static_cast<long>(m.segments.size()) - 1;
}

uint64_t bytes_to_durable(const Manifest& m, std::pair<uint64_t, uint64_t> from, uint64_t after_seq,
                          const Journal::Position& durable) {
  auto [seg, off] = from;
  if (seg == 0) {
    const long i = segment_for(m, after_seq + 1);
    seg = i < 0 ? 0 : m.segments[i].first_seq;
    off = format::kSegmentHeaderSize;
  }
  uint64_t bytes = 0;
  for (const ManifestSegment& s : m.segments) {
    if (s.first_seq < seg) continue;
    const uint64_t start = s.first_seq == seg ? off : format::kSegmentHeaderSize;
    if (s.first_seq == durable.segment_first_seq) {
      bytes += durable.offset > start ? durable.offset - start : 0;
      break;
    }
    if (s.sealed) bytes += s.bytes > start ? s.bytes - start : 0;
  }
  return bytes;
}

void JournalTail::seek(uint64_t seq) {
  next_seq_ = seq + 1;
  file_ = File();
}

Result<bool> JournalTail::next(const Manifest& m, uint64_t durable, RecordHeader* h,
                               std::vector<uint8_t>* payload) {
  if (next_seq_ > durable) return false;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!file_.is_open()) REWIND_RETURN_IF_ERROR(open_for(m));
    uint8_t buf[format::kRecordHeaderSize];
    size_t got = 0;
    REWIND_RETURN_IF_ERROR(file_.pread_full(std::span<uint8_t>(buf, sizeof buf), pos_, &got));
    if (got == sizeof buf && !is_zero_header(buf) && decode_header(buf, h).is_ok() &&
        h->seq == next_seq_) {
      payload->resize(h->payload_length);
      size_t pgot = 0;
      REWIND_RETURN_IF_ERROR(file_.pread_full(*payload, pos_ + format::kRecordHeaderSize, &pgot));
      if (pgot != h->payload_length || payload_checksum(*payload) != h->payload_checksum)
        return Status::corruption(
            fmt::format("{} offset {}: the payload of record {} does not match its checksum",
                        file_.path(), pos_, h->seq));
      pos_ += format::record_span(h->payload_length);
      ++next_seq_;
      return true;
    }
    // Not here: the segment was sealed and the record is in the next one (the
    // manifest names a segment before any record is written to it, and the record
    // is durable, so a fresh look finds it).
    const long i = segment_for(m, next_seq_);
    if (i < 0 || m.segments[i].first_seq == segment_first_)
      return Status::corruption(fmt::format("{} offset {}: record {} is durable but not there",
                                            file_.path(), pos_, next_seq_));
    file_ = File();
  }
  return Status::corruption(fmt::format("record {} is not in the journal", next_seq_));
}

Status JournalTail::open_for(const Manifest& m) {
  const long i = segment_for(m, next_seq_);
  if (i < 0)
    return Status::invalid(fmt::format(
        "record {} was folded into the base snapshot (at seq {}) before the log server had it",
        next_seq_, m.base_seq));
  const ManifestSegment& s = m.segments[i];
  auto f = File::open(segment_path(dir_, s.file), O_RDONLY);
  if (!f) return f.status();
  file_ = std::move(*f);
  segment_first_ = s.first_seq;
  pos_ = format::kSegmentHeaderSize;
  // Skip to next_seq_ by headers.
  for (uint64_t seq = s.first_seq; seq < next_seq_; ++seq) {
    uint8_t buf[format::kRecordHeaderSize];
    size_t got = 0;
    RecordHeader h;
    REWIND_RETURN_IF_ERROR(file_.pread_full(std::span<uint8_t>(buf, sizeof buf), pos_, &got));
    if (got != sizeof buf || !decode_header(buf, &h).is_ok() || h.seq != seq)
      return Status::corruption(
          fmt::format("{} offset {}: cannot find record {}", file_.path(), pos_, seq));
    pos_ += format::record_span(h.payload_length);
  }
  return Status::ok();
}

}  // namespace rwd
