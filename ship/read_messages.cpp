// The messages of reading a volume from a log server (docs/PROTOCOL.md, "Reading"):
// INFO and its REPORT, RESTORE and the VIEW, EXTENTs and END that answer it.
#include <array>

#include <fmt/format.h>

#include "codec.h"
#include "rewind/ship/protocol.h"

namespace rwd::proto {

using namespace codec;

std::vector<uint8_t> encode(const InfoRequest& m) {
  Writer w;
  w.u8(m.scan ? 1 : 0);
  return w.take();
}

Result<InfoRequest> decode_info(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kInfo));
  Reader r(f.payload);
  const uint8_t scan = r.u8();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (scan > 1) return malformed(f.type, fmt::format("scan {}", scan));
  return InfoRequest{scan == 1};
}

namespace {
// The counts of a SegmentReport, in their order on the wire.
constexpr size_t kSegmentCounts = 17;
std::array<uint64_t*, kSegmentCounts> segment_counts(SegmentReport& s) {
  return {&s.first_seq,    &s.last_seq,     &s.records,   &s.bytes,          &s.first_time_ns,
          &s.last_time_ns, &s.writes,       &s.zeroes,    &s.trims,          &s.marks,
          &s.flush_points, &s.coalesced,    &s.compacted, &s.granularity_ns, &s.bytes_written,
          &s.bytes_zeroed, &s.bytes_trimmed};
}
// The least a segment takes on the wire: file name length, flags, counts, torn length.
constexpr size_t kMinSegmentBytes = 2 + 1 + kSegmentCounts * 8 + 2;
}  // namespace

std::vector<uint8_t> encode(const Report& m) {
  const JournalReport& j = m.report;
  Writer w;
  const std::string manifest = j.manifest.serialize();
  w.u32(static_cast<uint32_t>(manifest.size()));
  w.bytes(std::span(reinterpret_cast<const uint8_t*>(manifest.data()), manifest.size()));
  w.u8(j.in_use ? 1 : 0);
  w.u64(j.base_bytes);
  w.u64(j.base_allocated);
  w.u32(static_cast<uint32_t>(j.segments.size()));
  for (SegmentReport s : j.segments) {
    w.str16(s.file);
    w.u8(static_cast<uint8_t>((s.sealed ? 1 : 0) | (s.scanned ? 2 : 0) | (s.torn_tail ? 4 : 0)));
    auto counts = segment_counts(s);
    for (uint64_t* c : counts) w.u64(*c);
    w.str16(s.torn_tail.value_or(""));
  }
  w.u32(static_cast<uint32_t>(j.marks.size()));
  for (const MarkReport& mk : j.marks) {
    w.str8(mk.name);
    w.u64(mk.seq);
    w.u64(mk.time_ns);
  }
  return w.take();
}

Result<Report> decode_report(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kReport));
  Reader r(f.payload);
  Report m;
  JournalReport& j = m.report;
  const uint32_t mlen = r.u32();
  auto mtext = r.bytes(mlen);
  if (!r.ok()) return malformed(f.type, "it ends early");
  auto manifest =
      Manifest::parse(std::string_view(reinterpret_cast<const char*>(mtext.data()), mtext.size()),
                      "the server's manifest");
  if (!manifest) return malformed(f.type, manifest.status().message());
  j.manifest = std::move(*manifest);
  j.in_use = r.u8() != 0;
  j.base_bytes = r.u64();
  j.base_allocated = r.u64();
  const uint32_t nseg = r.u32();
  if (!r.ok() || nseg > (f.payload.size() - r.pos()) / kMinSegmentBytes)
    return malformed(f.type, fmt::format("{} segments in {} bytes", nseg, f.payload.size()));
  for (uint32_t i = 0; i < nseg; ++i) {
    SegmentReport s;
    s.file = r.str16();
    const uint8_t flags = r.u8();
    s.sealed = flags & 1;
    s.scanned = flags & 2;
    auto counts = segment_counts(s);
    for (uint64_t* c : counts) *c = r.u64();
    std::string torn = r.str16();
    if (flags & 4) s.torn_tail = std::move(torn);
    if (!r.ok()) return malformed(f.type, fmt::format("segment {} is cut short", i));
    j.segments.push_back(std::move(s));
  }
  const uint32_t nmarks = r.u32();
  if (!r.ok() || nmarks > (f.payload.size() - r.pos()) / 17)
    return malformed(f.type, fmt::format("{} marks in {} bytes", nmarks, f.payload.size()));
  for (uint32_t i = 0; i < nmarks; ++i) {
    MarkReport mk;
    mk.name = r.str8();
    mk.seq = r.u64();
    mk.time_ns = r.u64();
    if (!r.ok()) return malformed(f.type, fmt::format("mark {} is cut short", i));
    j.marks.push_back(std::move(mk));
  }
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  return m;
}

std::vector<uint8_t> encode(const RestoreRequest& m) {
  Writer w;
  w.u8(static_cast<uint8_t>(m.target.kind));
  w.u64(m.target.seq);
  w.u64(m.target.time_ns);
  w.str8(m.target.mark);
  w.str16(m.target.text.substr(0, 1024));
  return w.take();
}

Result<RestoreRequest> decode_restore(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kRestore));
  Reader r(f.payload);
  RestoreRequest m;
  const uint8_t kind = r.u8();
  m.target.seq = r.u64();
  m.target.time_ns = r.u64();
  m.target.mark = r.str8();
  m.target.text = r.str16();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (kind > static_cast<uint8_t>(Target::Kind::kMark))
    return malformed(f.type, fmt::format("target kind {}", kind));
  m.target.kind = static_cast<Target::Kind>(kind);
  if (m.target.kind == Target::Kind::kMark) {
    if (Status st = check_mark_name(m.target.mark); !st) return malformed(f.type, st.message());
  }
  make_one_line(&m.target.text);
  return m;
}

std::vector<uint8_t> encode(const ViewInfo& m) {
  Writer w;
  w.u64(m.seq);
  w.u64(m.time_ns);
  w.u64(m.image_size);
  w.u64(m.extents);
  w.u64(m.journal_bytes);
  w.str16(m.note.substr(0, kMaxErrorMessage));
  return w.take();
}

Result<ViewInfo> decode_view(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kView));
  Reader r(f.payload);
  ViewInfo m;
  m.seq = r.u64();
  m.time_ns = r.u64();
  m.image_size = r.u64();
  m.extents = r.u64();
  m.journal_bytes = r.u64();
  m.note = r.str16();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (m.image_size == 0 || m.image_size % 512 != 0)
    return malformed(f.type,
                     fmt::format("image size {} is not a positive multiple of 512", m.image_size));
  make_one_line(&m.note);
  return m;
}

std::vector<uint8_t> encode(const Extent& m) {
  Writer w;
  w.u64(m.offset);
  w.u8(m.zero ? 1 : 0);
  if (m.zero)
    w.u64(m.length);
  else
    w.bytes(m.data);
  return w.take();
}

Result<Extent> decode_extent(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kExtent));
  Reader r(f.payload);
  Extent m;
  m.offset = r.u64();
  const uint8_t zero = r.u8();
  if (!r.ok()) return malformed(f.type, "it ends early");
  if (zero > 1) return malformed(f.type, fmt::format("kind {}", zero));
  m.zero = zero == 1;
  if (m.zero) {
    m.length = r.u64();
    REWIND_RETURN_IF_ERROR(finished(r, f.type));
    if (m.length == 0) return malformed(f.type, "an empty run");
  } else {
    auto data = r.bytes(f.payload.size() - r.pos());
    if (data.empty() || data.size() > kMaxExtentData)
      return malformed(f.type,
                       fmt::format("{} bytes of data (1 to {})", data.size(), kMaxExtentData));
    m.data.assign(data.begin(), data.end());
    m.length = m.data.size();
  }
  if (m.offset + m.length < m.offset) return malformed(f.type, "the run's range overflows");
  return m;
}

std::vector<uint8_t> encode(const End& m) {
  Writer w;
  w.u64(m.data_bytes);
  w.u64(m.zero_bytes);
  return w.take();
}

Result<End> decode_end(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kEnd));
  Reader r(f.payload);
  End m;
  m.data_bytes = r.u64();
  m.zero_bytes = r.u64();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  return m;
}

}  // namespace rwd::proto
