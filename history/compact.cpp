#include "rewind/history/compact.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "rewind/base/extent_map.h"
#include "rewind/base/file.h"
#include "rewind/base/units.h"
#include "rewind/format/format.h"
#include "rewind/format/payload_codec.h"
#include "rewind/format/record.h"
#include "rewind/format/segment.h"
#include "rewind/format/segment_index.h"
#include "rewind/history/rebase.h"
#include "rewind/journal/journal_dir.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/view.h"

namespace rwd {

using format::RecordType;

namespace {

// One record of the segments being compacted, in seq order.
struct Rec {
  uint32_t seg;  // index into the segments being compacted
  const IndexEntry* e;
};

// `len` bytes of record `src`'s payload, from `delta` on.
struct Part {
  size_t src;
  uint64_t delta, len;
};

// What a record becomes.
struct Out {
  enum class Kind {
    kKeep,   // the same range and data (its flags may change)
    kPiece,  // a surviving piece of the window (kFlagCompacted)
    kEmpty,  // nothing (kFlagSuperseded | kFlagCompacted)
  } kind = Kind::kKeep;
  RecordType type = RecordType::kNone;
  uint64_t offset = 0, length = 0;
  std::vector<Part> parts;  // a WRITE piece: where its bytes come from, in order
  uint8_t flags = 0;
  uint64_t window_end = 0;  // an empty record: the seq of its window's last record
};

// Where the newest version of a byte of a window lives.
struct Src {
  size_t rec;
  uint64_t delta;
  Src advanced(uint64_t n) const { return {rec, delta + n}; }
};

struct Piece {
  uint64_t start, end;
  size_t rec;
  uint64_t delta;
};

bool superseded(const IndexEntry& e) {
  return (e.flags & format::kFlagSuperseded) != 0;
}

uint64_t window_of(uint64_t time_ns, uint64_t granularity_ns) {
  return time_ns == 0 ? 0 : (time_ns - 1) / granularity_ns;
}

Out piece_out(const Piece& p, const IndexEntry& src) {
  Out o;
  o.kind = Out::Kind::kPiece;
  o.type = src.type;
  o.offset = p.start;
  o.length = p.end - p.start;
  if (src.type == RecordType::kWrite) o.parts.push_back(Part{p.rec, p.delta, o.length});
  return o;
}

constexpr size_t kZeroes = SIZE_MAX;  // a Part of zero bytes, from no record

bool is_zero_type(RecordType t) {
  return t == RecordType::kZero || t == RecordType::kTrim;
}

// Fewer pieces, for a window with more pieces than records: first touching pieces of
// one kind become one (data with data up to the largest payload; ZERO and TRIM, which
// read alike, with each other); then, while there are still more than `limit`, runs
// of zeroes between touching data are written as data, smallest first. Returns the
// pieces and adds the zero bytes written as data to *zero_data.
std::vector<Out> merge_pieces(const std::vector<Piece>& pieces, const std::vector<Rec>& recs,
                              size_t limit, uint64_t* zero_data) {
  std::vector<Out> merged;
  auto joinable = [](const Out& a, const Out& b) {
    if (a.offset + a.length != b.offset) return false;
    if (a.type == RecordType::kWrite)
      return b.type == RecordType::kWrite && a.length + b.length <= format::kMaxPayload;
    return is_zero_type(a.type) && is_zero_type(b.type);
  };
  auto join = [](Out& a, const Out& b) {
    a.length += b.length;
    a.parts.insert(a.parts.end(), b.parts.begin(), b.parts.end());
    if (a.type != b.type) a.type = RecordType::kZero;  // ZERO and TRIM: zeroes either way
  };
  for (const Piece& p : pieces) {
    Out o = piece_out(p, *recs[p.rec].e);
    if (!merged.empty() && joinable(merged.back(), o))
      join(merged.back(), o);
    else
      merged.push_back(std::move(o));
  }
  while (merged.size() > limit) {
    // The zero run whose absorption saves the most pieces, the shortest of those.
    size_t best = SIZE_MAX, best_saves = 0;
    for (size_t k = 0; k < merged.size(); ++k) {
      const Out& z = merged[k];
      if (!is_zero_type(z.type)) continue;
      uint64_t len = z.length;
      size_t saves = 0;
      if (k > 0 && merged[k - 1].type == RecordType::kWrite &&
          merged[k - 1].offset + merged[k - 1].length == z.offset)
        len += merged[k - 1].length, ++saves;
      if (k + 1 < merged.size() && merged[k + 1].type == RecordType::kWrite &&
          z.offset + z.length == merged[k + 1].offset)
        len += merged[k + 1].length, ++saves;
      if (saves == 0 || len > format::kMaxPayload) continue;
      if (saves > best_saves || (saves == best_saves && z.length < merged[best].length))
        best = k, best_saves = saves;
    }
    if (best == SIZE_MAX) break;
    Out z = std::move(merged[best]);
    *zero_data += z.length;
    z.type = RecordType::kWrite;
    z.parts = {Part{kZeroes, 0, z.length}};
    size_t at = best;
    if (at > 0 && merged[at - 1].type == RecordType::kWrite &&
        merged[at - 1].offset + merged[at - 1].length == z.offset) {
      --at;
      join(merged[at], z);
      merged.erase(merged.begin() + static_cast<long>(best));
    } else {
      merged[at] = std::move(z);
    }
    if (at + 1 < merged.size() && merged[at + 1].type == RecordType::kWrite &&
        merged[at].offset + merged[at].length == merged[at + 1].offset) {
      join(merged[at], merged[at + 1]);
      merged.erase(merged.begin() + static_cast<long>(at + 1));
    }
  }
  return merged;
}

// The end of planning the window recs[b, e): the records in `unused` are left with
// nothing, and the flags of every record from the first that changed say that the
// states before the window's last are no longer exact.
void finish_window(const std::vector<Rec>& recs, size_t b, size_t e, bool end_exact,
                   const std::vector<size_t>& unused, std::vector<Out>& outs, CompactionStats& st) {
  for (size_t i : unused) {
    if (superseded(*recs[i].e)) continue;  // had nothing already: kept as it is
    Out& o = outs[i];
    o.kind = Out::Kind::kEmpty;
    o.type = recs[i].e->type;
    o.offset = recs[i].e->offset;
    o.length = recs[i].e->length;
    o.parts.clear();
    o.window_end = recs[e - 1].e->seq;
  }
  // From the first record that changed to the end of the window, no state is exact but
  // the last one (when it was before).
  size_t first = b;
  while (first < e && outs[first].kind == Out::Kind::kKeep) ++first;
  for (size_t i = first; i < e; ++i) {
    uint8_t f = recs[i].e->flags;
    if (outs[i].kind != Out::Kind::kKeep)
      f = static_cast<uint8_t>((f & format::kFlagBatchStart) | format::kFlagCompacted |
                               (outs[i].kind == Out::Kind::kEmpty ? format::kFlagSuperseded : 0));
    f = static_cast<uint8_t>(f & ~format::kFlagFlushPoint);
    if (i + 1 == e && end_exact) f |= format::kFlagFlushPoint;
    outs[i].flags = f;
    if (outs[i].kind == Out::Kind::kEmpty) ++st.records_superseded;
    if (outs[i].kind == Out::Kind::kPiece) ++st.records_trimmed;
  }
}

// Plans the window recs[b, e): what each record becomes (in outs, which hold
// kKeep with the records' own flags on entry). `end_exact`: whether the state at the
// window's last record was exact before.
void plan_window(const std::vector<Rec>& recs, size_t b, size_t e, bool end_exact,
                 std::vector<Out>& outs, CompactionStats& st) {
  ExtentMap<Src> map;
  std::vector<size_t> slots;  // the records that may carry a piece: all but marks
  for (size_t i = b; i < e; ++i) {
    const IndexEntry& r = *recs[i].e;
    if (r.type == RecordType::kMark) continue;
    slots.push_back(i);
    if (!superseded(r)) map.insert(r.offset, r.length, Src{i, 0});
  }
  std::vector<Piece> pieces;
  std::vector<std::vector<size_t>> of(e - b);  // the pieces of each record
  for (const auto& [start, ext] : map) {
    of[ext.value.rec - b].push_back(pieces.size());
    pieces.push_back(Piece{start, ext.end, ext.value.rec, ext.value.delta});
  }
  auto whole = [&](size_t i) {
    const IndexEntry& r = *recs[i].e;
    return of[i - b].size() == 1 && pieces[of[i - b][0]].start == r.offset &&
           pieces[of[i - b][0]].end == r.offset + r.length;
  };
  bool changed = false;
  for (size_t i : slots) changed = changed || (!superseded(*recs[i].e) && !whole(i));
  if (!changed) return;

  // Each record keeps its first surviving piece; pieces beyond the first (of records
  // a newer one cut in two) go to records with nothing left. Pieces of one window are
  // disjoint, so which seq carries one does not change the window's last state.
  std::vector<size_t> spare;
  size_t extra = 0;
  for (size_t i : slots) {
    if (of[i - b].empty())
      spare.push_back(i);
    else
      extra += of[i - b].size() - 1;
  }
  std::vector<size_t> unused;  // records left with nothing
  if (extra <= spare.size()) {
    std::vector<Out> moved;
    for (size_t i : slots) {
      const std::vector<size_t>& mine = of[i - b];
      for (size_t k = 0; k < mine.size(); ++k) {
        Out o = piece_out(pieces[mine[k]], *recs[pieces[mine[k]].rec].e);
        if (k > 0)
          moved.push_back(std::move(o));
        else if (!whole(i))
          outs[i] = std::move(o);
      }
    }
    for (size_t k = 0; k < spare.size(); ++k) {
      if (k < moved.size())
        outs[spare[k]] = std::move(moved[k]);
      else
        unused.push_back(spare[k]);
    }
  } else {
    // More pieces than records: touching pieces are merged into one record.
    std::vector<Out> merged = merge_pieces(pieces, recs, slots.size(), &st.zero_data);
    if (merged.size() > slots.size()) {
      ++st.windows_kept;
      return;
    }
    const size_t first_used = slots.size() - merged.size();
    for (size_t k = 0; k < slots.size(); ++k) {
      if (k < first_used)
        unused.push_back(slots[k]);
      else
        outs[slots[k]] = std::move(merged[k - first_used]);
    }
  }
  finish_window(recs, b, e, end_exact, unused, outs, st);
  ++st.windows_changed;
}

// Reads records' payloads, each checked against its checksum and decoded; keeps the
// last one.
class PayloadReader {
 public:
  PayloadReader(const std::vector<Rec>& recs, const std::vector<File>& files,
                const std::vector<std::string>& names)
      : recs_(recs), files_(files), names_(names) {}

  Result<std::span<const uint8_t>> get(size_t rec) {
    if (rec != cached_) {
      const IndexEntry& e = *recs_[rec].e;
      cached_ = SIZE_MAX;
      buf_.resize(e.payload_length);
      REWIND_RETURN_IF_ERROR(files_[recs_[rec].seg].pread_full(buf_, e.payload_position()));
      if (payload_checksum(buf_) != e.payload_checksum)
        return Status::corruption(
            fmt::format("segment {} offset {} seq {}: payload checksum mismatch",
                        names_[recs_[rec].seg], e.position, e.seq));
      if (e.codec != format::Codec::kNone) {
        decoded_.resize(e.length);
        if (Status st = decode_payload(e.codec, buf_, decoded_); !st)
          return Status::corruption(fmt::format("segment {} offset {} seq {}: {}",
                                                names_[recs_[rec].seg], e.position, e.seq,
                                                st.message()));
      }
      cached_ = rec;
    }
    return std::span<const uint8_t>(recs_[rec].e->codec != format::Codec::kNone ? decoded_ : buf_);
  }
  // The payload of the record get() returned last, as stored.
  std::span<const uint8_t> stored() const { return buf_; }

 private:
  const std::vector<Rec>& recs_;
  const std::vector<File>& files_;
  const std::vector<std::string>& names_;
  size_t cached_ = SIZE_MAX;
  std::vector<uint8_t> buf_;
  std::vector<uint8_t> decoded_;
};

// Writes the records recs[b, e) of segment `ms` as they became (outs) to a new
// segment file, synced, with its index; returns the segment for the manifest.
// Record `i` (`r`) as the plan `o` rewrites it: kept as it was, emptied (superseded,
// its payload the seq its window ends at), or a piece, its payload assembled from
// the parts of the records it keeps.
// A piece of data from a compressed record is compressed too, by `encoder`, when that
// pays (as the flusher decides); *decoded then holds the piece's bytes, for its chunk
// checksums.
Status rewritten_record(const IndexEntry& r, const Out& o, size_t i, PayloadReader& payloads,
                        const std::vector<Rec>& recs, PayloadEncoder& encoder, RecordHeader* h,
                        std::vector<uint8_t>* payload, std::vector<uint8_t>* decoded) {
  h->seq = r.seq;
  h->time_ns = r.time_ns;
  h->flags = o.flags;
  payload->clear();
  if (o.kind == Out::Kind::kKeep) {
    h->type = r.type;
    h->offset = r.offset;
    h->length = r.length;
    auto p = payloads.get(i);
    if (!p) return p.status();
    // A record kept whole keeps the form it was stored in.
    h->codec = r.codec;
    const std::span<const uint8_t> stored =
        r.codec != format::Codec::kNone ? payloads.stored() : *p;
    payload->assign(stored.begin(), stored.end());
  } else if (o.kind == Out::Kind::kEmpty) {
    h->type = r.type;
    h->offset = r.offset;
    h->length = r.length;
    payload->resize(format::kSupersededPayload);
    put_u64(payload->data(), o.window_end);
  } else {
    h->type = o.type;
    h->offset = o.offset;
    h->length = o.length;
    bool from_compressed = false;
    for (const Part& part : o.parts) {
      if (part.src == kZeroes) {
        payload->resize(payload->size() + part.len, 0);
        continue;
      }
      from_compressed |= recs[part.src].e->codec != format::Codec::kNone;
      auto p = payloads.get(part.src);
      if (!p) return p.status();
      payload->insert(payload->end(), p->begin() + static_cast<long>(part.delta),
                      p->begin() + static_cast<long>(part.delta + part.len));
    }
    if (from_compressed && worth_encoding(*h)) {
      decoded->swap(*payload);
      if (encoder.encode(*decoded, payload)) {
        h->codec = encoder.compression().codec;
      } else {
        payload->swap(*decoded);
      }
    }
  }
  h->payload_length = static_cast<uint32_t>(payload->size());
  h->payload_checksum = payload_checksum(*payload);
  return Status::ok();
}

Result<ManifestSegment> write_rewrite(const std::string& dir, const Manifest& m,
                                      const ManifestSegment& ms, const File& in,
                                      const std::vector<Rec>& recs, size_t b, size_t e,
                                      const std::vector<Out>& outs, PayloadReader& payloads,
                                      uint64_t granularity_ns, CompactionStats& st) {
  std::vector<uint8_t> buf(format::kSegmentHeaderSize);
  REWIND_RETURN_IF_ERROR(in.pread_full(buf, 0));
  SegmentHeader sh;
  REWIND_RETURN_IF_ERROR(decode_segment_header(buf.data(), &sh).with_context(in.path()));
  if (sh.volume_id != m.volume_id || sh.first_seq != ms.first_seq)
    return Status::corruption(
        fmt::format("segment {} of {} belongs to another volume or starts at another seq than the "
                    "manifest says",
                    ms.file, dir));
  ManifestSegment out = ms;
  out.file = compacted_segment_file_name(ms.file);
  out.granularity_ns = granularity_ns;
  const std::string path = segment_path(dir, out.file), tmp = path + ".tmp";
  auto f = create_temp_file(tmp, O_WRONLY);
  if (!f) return f.status();
  uint64_t flushed = 0;  // bytes of the file before buf
  std::vector<IndexEntry> entries;
  std::vector<uint64_t> chunk_sums;
  std::vector<uint8_t> payload, decoded_piece;
  PayloadEncoder encoder(Compression{format::Codec::kZstd, kDefaultZstdLevel});
  for (size_t i = b; i < e; ++i) {
    const IndexEntry& r = *recs[i].e;
    const Out& o = outs[i];
    RecordHeader h;
    REWIND_RETURN_IF_ERROR(
        rewritten_record(r, o, i, payloads, recs, encoder, &h, &payload, &decoded_piece));
    Status valid = validate_header(h);
    if (!valid)
      return Status::invalid(
          fmt::format("compaction made an invalid record at seq {}: {}", r.seq, valid.message()));
    if (h.type == RecordType::kWrite && !(h.flags & format::kFlagSuperseded)) {
      st.data_before += r.type == RecordType::kWrite && !superseded(r) ? r.length : 0;
      st.data_after += h.length;
    } else if (r.type == RecordType::kWrite && !superseded(r)) {
      st.data_before += r.length;
    }
    const uint64_t pos = flushed + buf.size();
    IndexEntry entry{h.seq,  h.time_ns, h.offset,         h.length,          pos,
                     h.type, h.flags,   h.payload_length, h.payload_checksum};
    entry.codec = h.codec;
    if (h.codec == format::Codec::kNone) {
      add_chunk_sums(&entry, payload, &chunk_sums);
    } else if (o.kind != Out::Kind::kKeep) {
      add_chunk_sums(&entry, decoded_piece, &chunk_sums);  // a piece compressed above
    } else {
      // The chunk checksums are of the decoded bytes, which the reader still holds.
      auto decoded = payloads.get(i);
      if (!decoded) return decoded.status();
      add_chunk_sums(&entry, *decoded, &chunk_sums);
    }
    entries.push_back(entry);
    const size_t at = buf.size();
    buf.resize(at + format::record_span(h.payload_length), 0);
    encode_header(h, buf.data() + at);
    if (!payload.empty())
      std::memcpy(buf.data() + at + format::kRecordHeaderSize, payload.data(), payload.size());
    if (buf.size() >= (8u << 20)) {
      REWIND_RETURN_IF_ERROR(f->pwrite_full(buf, flushed));
      flushed += buf.size();
      buf.clear();
    }
  }
  REWIND_RETURN_IF_ERROR(f->pwrite_full(buf, flushed));
  out.bytes = flushed + buf.size();
  REWIND_RETURN_IF_ERROR(f->datasync());
  REWIND_RETURN_IF_ERROR(f->close());
  if (file_system().rename(tmp.c_str(), path.c_str()) != 0)
    return Status::io_error(fmt::format("cannot rename {} to {}", tmp, path), errno);
  REWIND_RETURN_IF_ERROR(
      write_segment_index(dir, out.file, m.volume_id, out.first_seq, entries, chunk_sums));
  return out;
}

}  // namespace

std::vector<size_t> compactable_segments(const Manifest& m, uint64_t upto_seq,
                                         uint64_t granularity_ns) {
  std::vector<size_t> out;
  for (size_t i = 0; i < m.segments.size(); ++i) {
    const ManifestSegment& s = m.segments[i];
    if (!s.sealed || s.last_seq > upto_seq || s.last_seq > m.checkpoint_seq) break;
    if (s.records > 0 && s.granularity_ns < granularity_ns) out.push_back(i);
  }
  return out;
}

// The records of the segments to compact, in seq order (`h` is the history up to
// the last of them), whether the state at each is exact now (a forward pass of the
// rule of exact_at_or_before), and those segments' files opened.
Status gather_records(const std::string& journal_dir, const Manifest& m, const JournalHistory& h,
                      const std::vector<size_t>& segments, std::vector<Rec>* recs,
                      std::vector<char>* exact, std::vector<File>* files,
                      std::vector<std::string>* names) {
  bool inexact = false;
  size_t k = 0;
  for (size_t s = 0; s < h.segments().size(); ++s) {
    const bool mine = k < segments.size() && segments[k] == s;
    if (mine) {
      auto f = File::open(segment_path(journal_dir, m.segments[s].file), O_RDONLY);
      if (!f) return f.status();
      files->push_back(std::move(*f));
      names->push_back(m.segments[s].file);
    }
    for (const IndexEntry& e : h.segments()[s].entries) {
      if (e.flags & format::kFlagFlushPoint)
        inexact = false;
      else if (e.flags & (format::kFlagSuperseded | format::kFlagCompacted))
        inexact = true;
      if (mine) {
        recs->push_back(Rec{static_cast<uint32_t>(k), &e});
        // The newest state is exact whatever came before it.
        exact->push_back(!inexact ||
                         (s + 1 == m.segments.size() && &e == &h.segments()[s].entries.back()));
      }
    }
    if (mine) ++k;
  }
  return Status::ok();
}

Result<CompactionPlan> prepare_compaction(const std::string& journal_dir, const Manifest& m,
                                          const std::vector<size_t>& segments,
                                          uint64_t granularity_ns, const Logger& logger,
                                          CompactionStats* stats) {
  CompactionStats st;
  CompactionPlan plan;
  plan.granularity_ns = granularity_ns;
  if (segments.empty()) return plan;
  for (size_t k = 0; k < segments.size(); ++k) {
    const size_t i = segments[k];
    if (granularity_ns == 0 || i >= m.segments.size() || !m.segments[i].sealed ||
        m.segments[i].last_seq > m.checkpoint_seq || (k > 0 && i <= segments[k - 1]))
      return Status::invalid(fmt::format("cannot compact segment {} of {}", i, journal_dir));
  }
  // The history up to the last segment compacted: its records, and which of its
  // states are exact now.
  Manifest upto = m;
  upto.segments.resize(segments.back() + 1);
  auto loaded = JournalHistory::load(journal_dir, std::move(upto), true, logger);
  if (!loaded) return loaded.status();
  const JournalHistory& h = *loaded;
  std::vector<Rec> recs;
  std::vector<char> exact;  // parallel to recs
  std::vector<File> files;
  std::vector<std::string> names;
  REWIND_RETURN_IF_ERROR(
      gather_records(journal_dir, m, h, segments, &recs, &exact, &files, &names));
  // The windows, and what each record becomes.
  std::vector<Out> outs(recs.size());
  for (size_t i = 0; i < recs.size(); ++i) outs[i].flags = recs[i].e->flags;
  size_t b = 0;
  for (size_t i = 0; i < recs.size(); ++i) {
    const IndexEntry& e = *recs[i].e;
    if (e.type == RecordType::kMark) ++st.marks;
    const bool last =
        i + 1 == recs.size() || e.type == RecordType::kMark || recs[i + 1].e->seq != e.seq + 1 ||
        window_of(recs[i + 1].e->time_ns, granularity_ns) != window_of(e.time_ns, granularity_ns);
    if (!last) continue;
    plan_window(recs, b, i + 1, exact[i] != 0, outs, st);
    ++st.windows;
    b = i + 1;
  }
  // Each segment with a record that changed is written anew; the others only take
  // the granularity in the manifest.
  PayloadReader payloads(recs, files, names);
  b = 0;
  for (size_t k = 0; k < segments.size(); ++k) {
    const ManifestSegment& ms = m.segments[segments[k]];
    size_t e = b;
    bool changed = false;
    while (e < recs.size() && recs[e].seg == k) {
      changed = changed || outs[e].kind != Out::Kind::kKeep || outs[e].flags != recs[e].e->flags;
      ++e;
    }
    ++st.segments;
    st.bytes_before += ms.bytes;
    ManifestSegment out = ms;
    out.granularity_ns = granularity_ns;
    if (changed) {
      auto w = write_rewrite(journal_dir, m, ms, files[k], recs, b, e, outs, payloads,
                             granularity_ns, st);
      if (!w) return w.status();
      out = std::move(*w);
      ++st.segments_rewritten;
    } else {
      for (size_t i = b; i < e; ++i)
        if (recs[i].e->type == RecordType::kWrite && !superseded(*recs[i].e))
          st.data_before += recs[i].e->length, st.data_after += recs[i].e->length;
    }
    st.bytes_after += out.bytes;
    plan.replaced.push_back(ms);
    plan.written.push_back(std::move(out));
    b = e;
  }
  if (st.segments_rewritten > 0)
    REWIND_RETURN_IF_ERROR(sync_dir(join_path(journal_dir, format::kSegmentDir)));
  if (stats != nullptr) *stats = st;
  return plan;
}

Result<CompactResult> compact(const std::string& journal_dir, const Target& before,
                              uint64_t granularity_ns, const Logger& logger) {
  if (granularity_ns == 0)
    return Status::invalid("the granularity must be longer than 0; e.g. --granularity 1m");
  auto locked = lock_for_change(journal_dir, logger);
  if (!locked) return locked.status();
  const JournalHistory& history = *locked->history;
  const Manifest& m = history.manifest();
  CompactResult r;
  auto last = last_seq_to_change(history, before, &r.note);
  if (!last) return last.status();
  const uint64_t want = *last;
  const std::vector<size_t> segs = compactable_segments(m, want, granularity_ns);
  if (segs.empty()) {
    if (r.note.empty())
      r.note = fmt::format(
          "nothing to compact: no sealed segment that ends at or before seq {} holds records "
          "compacted more finely than {} (compaction rewrites whole segments)",
          want, format_duration(std::chrono::nanoseconds(granularity_ns)));
    return r;
  }
  auto plan = prepare_compaction(journal_dir, m, segs, granularity_ns, logger, &r.stats);
  if (!plan) return plan.status();
  auto next = commit_change(journal_dir, m, *plan, &r.bytes_freed);
  if (!next) return next.status();
  log_to(logger, LogLevel::kInfo,
         fmt::format("compacted {} segments of {} to one state per {}: {} -> {} bytes", segs.size(),
                     journal_dir, format_duration(std::chrono::nanoseconds(granularity_ns)),
                     r.stats.bytes_before, r.stats.bytes_after));
  return r;
}

}  // namespace rwd
