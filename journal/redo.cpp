#include "rewind/journal/redo.h"

#include <fmt/format.h>

#include "rewind/format/segment.h"
#include "rewind/journal/journal.h"

namespace rwd {

using format::RecordType;

Status apply_record(const File& image, const RecordHeader& h, std::span<const uint8_t> payload) {
  if (h.flags & format::kFlagSuperseded) return Status::ok();  // a newer record has its bytes
  switch (h.type) {
    case RecordType::kWrite:
      return image.pwrite_full(payload, h.offset);
    case RecordType::kZero:
      return zero_range(image, h.offset, h.length, false);
    case RecordType::kTrim:
      return zero_range(image, h.offset, h.length, true);
    case RecordType::kMark:
    case RecordType::kNone:
      return Status::ok();
  }
  return Status::ok();
}

Status redo_records(const std::string& journal_dir, const Manifest& m, uint64_t after_seq,
                    const File& image) {
  for (const ManifestSegment& seg : m.segments) {
    if (seg.sealed && seg.last_seq <= after_seq) continue;
    auto reader = SegmentReader::open(segment_path(journal_dir, seg.file), seg.sealed);
    if (!reader) return reader.status();
    RecordView rec;
    for (;;) {
      auto more = reader->next(&rec);
      if (!more) return more.status();
      if (!*more) break;
      if (rec.header.seq <= after_seq) continue;
      REWIND_RETURN_IF_ERROR(apply_record(image, rec.header, rec.payload));
    }
    if (seg.sealed && reader->last_seq() != seg.last_seq)
      return Status::corruption(fmt::format("segment {} ends at seq {} but the manifest says {}",
                                            seg.file, reader->last_seq(), seg.last_seq));
  }
  return Status::ok();
}

}  // namespace rwd
