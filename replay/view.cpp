#include "rewind/replay/view.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "rewind/format/payload_codec.h"
#include "rewind/format/record.h"
#include "rewind/format/seal.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/restore.h"

namespace rwd {

using format::RecordType;

Result<JournalHistory> JournalHistory::load(const std::string& journal_dir, bool repair,
                                            const Logger& logger) {
  auto m = Manifest::load(journal_dir);
  if (!m) return m.status();
  // A served volume's retention may switch the manifest to fewer segments and remove
  // the old ones while they are read: a segment the manifest names that is gone means
  // a newer manifest, which is read again (a few times at most).
  for (int attempt = 0;; ++attempt) {
    auto h = load(journal_dir, *m, repair, logger);
    if (h || h.status().errno_value() != ENOENT || attempt == 4) return h;
    auto again = Manifest::load(journal_dir);
    if (!again) return again.status();
    if (*again == *m) return h;  // not a race: the file is missing
    m = std::move(again);
  }
}

Result<JournalHistory> JournalHistory::load(const std::string& journal_dir, Manifest manifest,
                                            bool repair, const Logger& logger) {
  JournalHistory h;
  h.dir_ = journal_dir;
  h.manifest_ = std::move(manifest);
  h.last_seq_ = h.manifest_.base_seq;
  h.last_time_ns_ = h.manifest_.base_time_ns;
  h.sealed_ = h.manifest_.base_sealed;
  // A mark at the base itself (kept by a rebase) is in no segment any more.
  for (const ManifestMark& mk : h.manifest_.marks)
    if (mk.seq == h.manifest_.base_seq)
      h.marks_.push_back(MarkInfo{mk.name, mk.seq, mk.time_ns, {}, {}});
  for (const ManifestSegment& seg : h.manifest_.segments) {
    auto entries = load_segment_entries(journal_dir, h.manifest_.volume_id, seg, repair, logger);
    if (!entries) return entries.status();
    if (!entries->entries.empty()) {
      if (entries->entries.front().seq != h.last_seq_ + 1)
        return Status::corruption(
            fmt::format("segment {} starts at seq {} but the journal before it "
                        "ends at seq {}",
                        seg.file, entries->entries.front().seq, h.last_seq_));
      h.last_seq_ = entries->entries.back().seq;
      h.last_time_ns_ = entries->entries.back().time_ns;
    }
    for (const IndexEntry& e : entries->entries) {
      if (e.seal != format::Seal::kNone) h.sealed_ = true;
      if (e.type != RecordType::kMark) continue;
      auto mark = read_mark(journal_dir, seg, e);
      if (!mark) return mark.status();
      h.marks_.push_back(MarkInfo{mark->name, e.seq, e.time_ns, mark->group, mark->volumes});
    }
    h.segments_.push_back(std::move(*entries));
  }
  return h;
}

std::string JournalHistory::range_text() const {
  return fmt::format("seq {} ({}) .. seq {} ({})", first_seq(), format_time(first_time_ns()),
                     last_seq(), format_time(last_time_ns()));
}

uint64_t JournalHistory::exact_at_or_before(uint64_t seq, bool newest_exact) const {
  if (seq >= last_seq_ && newest_exact) return seq;
  // Walk back to the last flush point (or the base) at or before seq; the first
  // superseded record after it, if any, is where exact points stop.
  uint64_t first_superseded = 0;
  for (size_t s = segments_.size(); s-- > 0;) {
    const auto& es = segments_[s].entries;
    auto it = std::upper_bound(es.begin(), es.end(), seq,
                               [](uint64_t v, const IndexEntry& e) { return v < e.seq; });
    while (it != es.begin()) {
      --it;
      if (it->flags & format::kFlagFlushPoint) return first_superseded ? first_superseded - 1 : seq;
      if (it->flags & (format::kFlagSuperseded | format::kFlagCompacted))
        first_superseded = it->seq;
    }
  }
  return first_superseded ? first_superseded - 1 : seq;
}

Result<uint64_t> JournalHistory::resolve(const Target& t, std::string* note) const {
  note->clear();
  auto seq = resolve_exact(t, note);
  if (!seq) return seq;
  const uint64_t exact = exact_at_or_before(*seq);
  if (exact == *seq) return seq;
  std::string before = note->empty() ? "" : *note + "; ";
  *note = fmt::format(
      "{}seq {} lies where writes were coalesced (coalesce=on) or compacted (rewind compact) and "
      "is not restorable exactly; restoring seq {}, the last exact point before it (marks always "
      "are, and so are flush points and compaction window ends)",
      before, *seq, exact);
  return exact;
}

Result<uint64_t> JournalHistory::resolve_exact(const Target& t, std::string* note) const {
  switch (t.kind) {
    case Target::Kind::kNewest:
      *note = fmt::format("newest state: seq {} ({})", last_seq_, format_time(last_time_ns_));
      return last_seq_;
    case Target::Kind::kSeq:
      if (t.seq < first_seq())
        return Status::invalid(
            fmt::format("seq {} is before the oldest restorable point; the "
                        "restorable range is {}",
                        t.seq, range_text()));
      if (t.seq > last_seq_)
        return Status::invalid(
            fmt::format("seq {} does not exist; the journal ends at seq {} (range {})", t.seq,
                        last_seq_, range_text()));
      return t.seq;
    case Target::Kind::kTime: {
      if (t.time_ns < first_time_ns())
        return Status::invalid(
            fmt::format("{} ({}) is before the oldest restorable point; the "
                        "restorable range is {}",
                        t.text, format_time(t.time_ns), range_text()));
      if (t.time_ns >= last_time_ns_) {
        *note =
            fmt::format("{} is at or after the newest record: newest state, ending at seq {} ({})",
                        t.text, last_seq_, format_time(last_time_ns_));
        return last_seq_;
      }
      // Times never decrease in seq order: the last record at or before the time.
      uint64_t seq = first_seq();
      for (const SegmentEntries& s : segments_) {
        if (s.entries.empty() || s.entries.front().time_ns > t.time_ns) break;
        auto it = std::upper_bound(s.entries.begin(), s.entries.end(), t.time_ns,
                                   [](uint64_t v, const IndexEntry& e) { return v < e.time_ns; });
        seq = std::prev(it)->seq;
      }
      return seq;
    }
    case Target::Kind::kMark: {
      for (const MarkInfo& m : marks_)
        if (m.name == t.mark) return m.seq;
      std::string known;
      for (size_t i = 0; i < marks_.size() && i < 10; ++i)
        known += (i ? ", " : "") + marks_[i].name;
      return Status::invalid(fmt::format("no mark named '{}' in {}; marks: {}", t.mark, dir_,
                                         known.empty() ? "none" : known));
    }
  }
  return Status::invalid("unknown target");
}

Result<std::unique_ptr<JournalView>> JournalView::open(const std::string& journal_dir,
                                                       const Target& target, const Logger& logger,
                                                       bool repair) {
  auto history = JournalHistory::load(journal_dir, repair, logger);
  if (!history) return history.status();
  auto shared = std::make_shared<const JournalHistory>(std::move(*history));
  std::string note;
  auto seq = shared->resolve(target, &note);
  if (!seq) return seq.status();
  auto view = open(shared, *seq);
  if (view && !note.empty()) (*view)->note_ = note;
  return view;
}

Result<std::unique_ptr<JournalView>> JournalView::open(
    std::shared_ptr<const JournalHistory> history, uint64_t seq) {
  std::unique_ptr<JournalView> v(new JournalView());
  v->history_ = std::move(history);
  const JournalHistory& h = *v->history_;
  if (seq < h.first_seq() || seq > h.last_seq())
    return Status::invalid(
        fmt::format("seq {} is outside the restorable range {}", seq, h.range_text()));
  v->seq_ = seq;
  v->time_ns_ = h.first_time_ns();
  auto base = File::open(base_path(h.dir(), h.manifest().base_file), O_RDONLY);
  if (!base) return base.status();
  v->base_ = std::move(*base);
  // The records up to seq, in order: the first `counts[s]` entries of each segment s.
  std::vector<bool> used(h.segments().size(), false);
  std::vector<size_t> first(h.segments().size() + 1, 0);  // index of a segment's first
  size_t n = 0;
  for (size_t s = 0; s < h.segments().size(); ++s) {
    first[s] = n;
    for (const IndexEntry& e : h.segments()[s].entries) {
      if (e.seq > seq) break;
      v->time_ns_ = e.time_ns;
      used[s] = used[s] || (e.type == RecordType::kWrite && !(e.flags & format::kFlagSuperseded));
      ++n;
    }
  }
  first.back() = n;
  v->map_ = FlatExtentMap<ViewSource>::newest_wins(n, [&](size_t i) {
    const auto s =
        static_cast<uint32_t>(std::upper_bound(first.begin(), first.end(), i) - first.begin() - 1);
    const auto entry = static_cast<uint32_t>(i - first[s]);
    const IndexEntry& e = h.segments()[s].entries[entry];
    // A superseded record changes nothing: a newer one covers it whole.
    const bool superseded = e.flags & format::kFlagSuperseded;
    const bool write = e.type == RecordType::kWrite && !superseded;
    const bool zero = (e.type == RecordType::kZero || e.type == RecordType::kTrim) && !superseded;
    return Interval<ViewSource>{
        e.offset, write || zero ? e.length : 0,
        ViewSource{zero, s, entry, 0,
                   e.codec != format::Codec::kNone || e.seal != format::Seal::kNone
                       ? static_cast<uint32_t>(e.length)
                       : e.payload_length,
                   e.chunk_sums, e.payload_checksum,
                   e.codec != format::Codec::kNone || e.seal != format::Seal::kNone}};
  });
  v->verified_.resize(used.size());
  v->chunks_verified_.resize(used.size());
  v->segments_.resize(used.size());
  for (size_t s = 0; s < used.size(); ++s) {
    if (!used[s]) continue;
    const ManifestSegment& ms = h.manifest().segments[s];
    auto f = File::open(segment_path(h.dir(), ms.file), O_RDONLY);
    if (!f) return f.status();
    if (auto bytes = f->size(); ms.sealed && bytes && *bytes != ms.bytes)
      v->damaged_.push_back(
          fmt::format("segment {} is {} bytes but the manifest says {} (truncated or overwritten)",
                      ms.file, *bytes, ms.bytes));
    // Reads of a view jump around the journal, and prefetch() asks for exactly what
    // they need: the kernel's own read-ahead would only read more.
    ::posix_fadvise(f->fd(), 0, 0, POSIX_FADV_RANDOM);
    v->segments_[s] = std::move(*f);
    v->verified_[s].assign(h.segments()[s].entries.size(), false);
    v->chunks_verified_[s].assign(h.segments()[s].chunk_sums.size(), false);
  }
  return v;
}

Status JournalView::check_payload(uint32_t segment, uint32_t entry,
                                  std::span<const uint8_t> payload) const {
  const IndexEntry& e = history_->segments()[segment].entries[entry];
  if (payload_checksum(payload) != e.payload_checksum)
    return Status::corruption(fmt::format("segment {} offset {} seq {}: payload checksum mismatch",
                                          history_->manifest().segments[segment].file, e.position,
                                          e.seq));
  std::lock_guard lk(verified_mu_);
  verified_[segment][entry] = true;
  return Status::ok();
}

// The pieces of [offset, offset+length), in order, gaps filled from the base.
using Piece = JournalView::Piece;

template <class F>
static void for_each_piece(const FlatExtentMap<ViewSource>& map, uint64_t offset, uint64_t length,
                           F&& f) {
  uint64_t pos = offset;
  map.for_each(offset, length, [&](uint64_t s, uint64_t e, const ViewSource& v, uint64_t adv) {
    if (s > pos) f(Piece{pos, s, nullptr, 0});
    f(Piece{s, e, &v, adv});
    pos = e;
  });
  if (pos < offset + length) f(Piece{pos, offset + length, nullptr, 0});
}

bool JournalView::checked(uint32_t segment, uint32_t entry) const {
  std::lock_guard lk(verified_mu_);
  return verified_[segment][entry];
}

JournalView::Chunks JournalView::chunks_of(const IndexEntry& rec, uint64_t within, uint64_t n) {
  const auto first = static_cast<uint32_t>(within / format::kIndexChunkSize);
  const auto last = static_cast<uint32_t>((within + n - 1) / format::kIndexChunkSize);
  return {first, last, uint64_t{first} * format::kIndexChunkSize,
          std::min<uint64_t>(uint64_t{last + 1} * format::kIndexChunkSize, rec.length)};
}

bool JournalView::chunks_checked(uint32_t segment, uint32_t first, uint32_t last) const {
  std::lock_guard lk(verified_mu_);
  const std::vector<bool>& done = chunks_verified_[segment];
  for (uint32_t c = first; c <= last; ++c)
    if (!done[c]) return false;
  return true;
}

void JournalView::prefetch(uint64_t offset, uint64_t length) const {
  if (offset >= size()) return;
  length = std::min(length, size() - offset);
  if (fetcher_) {
    // What fails here fails again, and is reported, when it is read.
    std::vector<Piece> pieces;
    for_each_piece(map_, offset, length, [&](const Piece& p) { pieces.push_back(p); });
    std::vector<const Piece*> ptrs;
    for (const Piece& p : pieces) ptrs.push_back(&p);
    (void)fetch_for(ptrs);
    return;
  }
  // Runs of pieces to be read from the image are asked for as one range each, with the
  // gaps between them that read_from_image() reads too.
  uint64_t run_start = 0, run_end = 0;
  auto advise_run = [&] {
    if (run_end > run_start)
      ::posix_fadvise(image_.fd(), static_cast<off_t>(run_start),
                      static_cast<off_t>(run_end - run_start), POSIX_FADV_WILLNEED);
    run_start = run_end = 0;
  };
  for_each_piece(map_, offset, length, [&](const Piece& p) {
    if (!in_image(p)) {
      if (run_end > run_start && p.end - run_end > kImageGap) advise_run();
      advise(p);
    } else if (run_end > run_start && p.start - run_end <= kImageGap) {
      run_end = p.end;
    } else {
      advise_run();
      run_start = p.start;
      run_end = p.end;
    }
  });
  advise_run();
}

Status JournalView::read(std::span<uint8_t> buf, uint64_t offset) const {
  if (offset > size() || buf.size() > size() - offset)
    return Status::invalid(
        fmt::format("read of {} bytes at offset {} is beyond the end of the volume ({} bytes)",
                    buf.size(), offset, size()));
  std::vector<Piece> pieces;
  for_each_piece(map_, offset, buf.size(), [&](const Piece& p) { pieces.push_back(p); });
  // What the image holds first, then the rest from the journal and the base.
  std::vector<const Piece*> rest;
  read_from_image(pieces, buf, offset, &rest);
  auto fetched = fetch_for(rest);
  if (!fetched) return fetched.status();
  // First what the page cache holds, without waiting; then the rest, asked for all at
  // once (the kernel reads it in parallel) before it is read: a read of many small
  // extents scattered through the journal costs about one trip to the disk, and a
  // read of cached data no advice at all.
  std::vector<const Piece*> missing;
  std::vector<uint8_t> whole;  // a record read whole to be checked
  for (const Piece* p : rest) {
    auto got = fill(*p, buf.subspan(p->start - offset, p->end - p->start), true, &whole);
    if (!got) return got.status();
    if (!*got) missing.push_back(p);
  }
  if (missing.size() > 1)
    for (const Piece* p : missing) advise(*p);
  for (const Piece* p : missing)
    REWIND_RETURN_IF_ERROR(
        fill(*p, buf.subspan(p->start - offset, p->end - p->start), false, &whole).status());
  return Status::ok();
}

void JournalView::use_image(const Logger& logger) {
  const std::string& path = history_->manifest().image_path;
  auto journal_alone = [&](const std::string& why) {
    log_to(logger, LogLevel::kInfo, fmt::format("reading everything from the journal: {}", why));
  };
  if (path.empty()) return journal_alone("the manifest names no image");
  // Without blocking on a FIFO that a manifest names as its image.
  auto f = File::open(path, O_RDONLY | O_NONBLOCK);
  if (!f) return journal_alone(f.status().message());
  struct stat st;
  if (::fstat(f->fd(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
    return journal_alone(fmt::format("{} is not a file or a block device", path));
  const off_t end = ::lseek(f->fd(), 0, SEEK_END);
  if (end < 0 || static_cast<uint64_t>(end) < size())
    return journal_alone(fmt::format("the image {} is {} bytes, smaller than the volume ({} bytes)",
                                     path, end, size()));
  image_logger_ = logger;
  image_ = std::move(*f);
}

JournalView::ImageReads JournalView::image_reads() const {
  return {image_pieces_.load(), image_bytes_.load(), image_mismatched_.load(),
          image_given_up_.load()};
}

bool JournalView::in_image(const Piece& p) const {
  if (!image_.is_open() || image_given_up_.load(std::memory_order_relaxed) || p.source == nullptr ||
      p.source->zero)
    return false;
  const ViewSource& src = *p.source;
  // The checksum of a payload stored with a codec is not that of the bytes it holds.
  if (src.encoded && !src.has_chunk_sums()) return false;
  const uint64_t within = src.delta + p.adv;
  const uint64_t end = within + (p.end - p.start);
  const bool covered = src.has_chunk_sums()
                           ? within % format::kIndexChunkSize == 0 &&
                                 (end % format::kIndexChunkSize == 0 || end == src.payload_length)
                           : within == 0 && end == src.payload_length;
  if (!covered) return false;
  // What records after the view's seq changed, found on first use rather than at
  // open: it costs O(those records), and a view of an old point has many.
  std::call_once(changed_later_once_, [&] {
    for (const ChangedExtent& c : changed_extents(*history_, seq_, history_->last_seq()))
      changed_later_.emplace_back(c.offset, c.offset + c.length);
  });
  // The first extent changed later that ends after the piece's start.
  auto later = std::upper_bound(changed_later_.begin(), changed_later_.end(), p.start,
                                [](uint64_t at, const auto& c) { return at < c.second; });
  return later == changed_later_.end() || later->first >= p.end;
}

void JournalView::read_from_image(const std::vector<Piece>& pieces, std::span<uint8_t> buf,
                                  uint64_t offset, std::vector<const Piece*>* rest) const {
  std::vector<char> from_image(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) from_image[i] = in_image(pieces[i]);
  // Runs of pieces to be read from the image are read with one pread each, and so are
  // runs with gaps of other pieces between them up to kImageGap (blocks never written,
  // which come from the base; parts changed later): the gaps' bytes are read too, then
  // overwritten from where they do come from. One larger read costs less than several,
  // and the kernel's read-ahead sees one sequential stream, not a random read per run.
  for (size_t i = 0; i < pieces.size();) {
    if (!from_image[i]) {
      rest->push_back(&pieces[i++]);
      continue;
    }
    size_t last = i;  // the last piece of the span to be read from the image
    for (size_t j = i + 1; j < pieces.size(); ++j) {
      if (from_image[j]) {
        last = j;
      } else if (pieces[j].end - pieces[last].end > kImageGap) {
        break;
      }
    }
    // Pieces are adjacent: the span is one read.
    const uint64_t start = pieces[i].start;
    std::span<uint8_t> span = buf.subspan(start - offset, pieces[last].end - start);
    const bool got = image_.pread_full(span, start).is_ok();
    for (; i <= last; ++i) {
      const Piece& p = pieces[i];
      if (!from_image[i] || !got || image_given_up_.load(std::memory_order_relaxed) ||
          !image_holds(p, span.subspan(p.start - start, p.end - p.start)))
        rest->push_back(&p);
    }
  }
}

std::optional<uint32_t> JournalView::first_differing_chunk(uint32_t segment, uint32_t chunk_sums,
                                                           uint32_t first,
                                                           std::span<const uint8_t> chunks) const {
  const std::vector<uint64_t>& sums = history_->segments()[segment].chunk_sums;
  for (uint64_t at = 0; at < chunks.size(); at += format::kIndexChunkSize) {
    const size_t n = std::min<uint64_t>(format::kIndexChunkSize, chunks.size() - at);
    const uint32_t c = first + static_cast<uint32_t>(at / format::kIndexChunkSize);
    if (chunk_sum(chunks.subspan(at, n)) != sums[chunk_sums + c]) return c;
  }
  return std::nullopt;
}

bool JournalView::image_holds(const Piece& p, std::span<const uint8_t> bytes) const {
  const ViewSource& src = *p.source;
  // in_image() took only pieces that begin at a chunk.
  const auto first = static_cast<uint32_t>((src.delta + p.adv) / format::kIndexChunkSize);
  const bool same = src.has_chunk_sums()
                        ? !first_differing_chunk(src.segment, src.chunk_sums, first, bytes)
                        : payload_checksum(bytes) == src.payload_checksum;
  if (same) {
    image_pieces_.fetch_add(1, std::memory_order_relaxed);
    image_bytes_.fetch_add(bytes.size(), std::memory_order_relaxed);
    return true;
  }
  // An image that mostly differs is not this volume's, or far from its journal:
  // reading it first only doubles the reads.
  constexpr uint64_t kGiveUpAfter = 64;
  const uint64_t differ = image_mismatched_.fetch_add(1, std::memory_order_relaxed) + 1;
  const uint64_t matched = image_pieces_.load(std::memory_order_relaxed);
  if (differ >= kGiveUpAfter && differ > matched && !image_given_up_.exchange(true))
    log_to(image_logger_, LogLevel::kWarning,
           fmt::format("the image {} does not hold what the journal says it should ({} of {} "
                       "pieces checked differ); reading from the journal alone",
                       image_.path(), differ, differ + matched));
  return false;
}

std::optional<ViewFetcher::Range> JournalView::needs(const Piece& p) const {
  if (p.source == nullptr && history_->manifest().base_sealed) return sealed_slots(p.start, p.end);
  if (p.source == nullptr) return ViewFetcher::Range{-1, p.start, p.end - p.start};
  if (p.source->zero) return std::nullopt;
  const IndexEntry& rec = history_->segments()[p.source->segment].entries[p.source->entry];
  uint64_t at = p.source->delta + p.adv;
  uint64_t len = p.end - p.start;
  if (!checked(p.source->segment, p.source->entry) || p.source->encoded) {
    // The whole payload, chunk checksums or not: a chunk that does not match its
    // checksum is judged by the record's own checksum, over all of it. A payload
    // stored with a codec is fetched whole too: its frames are found by its table.
    at = 0;
    len = rec.payload_length;
  }
  return ViewFetcher::Range{p.source->segment, rec.payload_position() + at, len};
}

Result<std::shared_ptr<void>> JournalView::fetch_for(std::span<const Piece* const> pieces) const {
  if (!fetcher_) return std::shared_ptr<void>();
  std::vector<ViewFetcher::Range> ranges;
  for (const Piece* p : pieces)
    if (auto r = needs(*p)) ranges.push_back(*r);
  return fetcher_->fetch(ranges);
}

void JournalView::advise(const Piece& p) const {
  if (p.source == nullptr && history_->manifest().base_sealed) {
    const uint64_t first = p.start / kSealedChunkBytes, last = (p.end - 1) / kSealedChunkBytes;
    ::posix_fadvise(base_.fd(), static_cast<off_t>(first * kSealedSlotBytes),
                    static_cast<off_t>((last - first + 1) * kSealedSlotBytes), POSIX_FADV_WILLNEED);
  } else if (p.source == nullptr) {
    ::posix_fadvise(base_.fd(), static_cast<off_t>(p.start), static_cast<off_t>(p.end - p.start),
                    POSIX_FADV_WILLNEED);
  } else if (!p.source->zero) {
    // A record not yet checked is read whole (or the chunks of it that the piece lies
    // in, where the index has chunk checksums), so all of that is asked for.
    const IndexEntry& rec = history_->segments()[p.source->segment].entries[p.source->entry];
    uint64_t at = p.source->delta + p.adv;
    uint64_t len = p.end - p.start;
    if (rec.codec != format::Codec::kNone || rec.seal != format::Seal::kNone) {
      at = 0;
      len = rec.payload_length;
    } else if (!checked(p.source->segment, p.source->entry)) {
      if (rec.has_chunk_sums()) {
        const Chunks c = chunks_of(rec, at, len);
        at = c.begin;
        len = c.end - c.begin;
      } else {
        at = 0;
        len = rec.payload_length;
      }
    }
    at += rec.payload_position();
    ::posix_fadvise(segments_[p.source->segment].fd(), static_cast<off_t>(at),
                    static_cast<off_t>(len), POSIX_FADV_WILLNEED);
  }
}

Result<bool> JournalView::fill(const Piece& p, std::span<uint8_t> dst, bool cached_only,
                               std::vector<uint8_t>* whole) const {
  auto read = [&](const File& f, std::span<uint8_t> into, uint64_t at) -> Result<bool> {
    if (cached_only) return f.pread_cached(into, at);
    REWIND_RETURN_IF_ERROR(f.pread_full(into, at));
    return true;
  };
  if (p.source == nullptr) {
    if (history_->manifest().base_sealed) {
      REWIND_RETURN_IF_ERROR(read_sealed_base(dst, p.start));
      return true;
    }
    return read(base_, dst, p.start);
  }
  const ViewSource& v = *p.source;
  if (v.zero) {
    std::memset(dst.data(), 0, dst.size());
    return true;
  }
  const IndexEntry& rec = history_->segments()[v.segment].entries[v.entry];
  const uint64_t within = v.delta + p.adv;
  if (rec.seal != format::Seal::kNone)
    return fill_sealed(rec, v.segment, v.entry, within, dst, whole);
  if (rec.codec != format::Codec::kNone)
    return fill_encoded(rec, v.segment, v.entry, within, dst, cached_only, whole);
  if (checked(v.segment, v.entry))
    return read_segment(v.segment, dst, rec.payload_position() + within, cached_only, true);
  if (rec.has_chunk_sums())
    return fill_chunked(rec, v.segment, v.entry, within, dst, cached_only, whole);
  if (within == 0 && dst.size() == rec.payload_length) {
    // The piece is the whole payload: read it in place and check it there.
    auto got = read_segment(v.segment, dst, rec.payload_position(), cached_only, false);
    if (!got || !*got) return got;
    REWIND_RETURN_IF_ERROR(check_payload(v.segment, v.entry, dst));
    return true;
  }
  whole->resize(rec.payload_length);
  auto got = read_segment(v.segment, *whole, rec.payload_position(), cached_only, false);
  if (!got || !*got) return got;
  REWIND_RETURN_IF_ERROR(check_payload(v.segment, v.entry, *whole));
  std::memcpy(dst.data(), whole->data() + within, dst.size());
  return true;
}

Status JournalView::map_segments() {
  const Manifest& m = history_->manifest();
  maps_.resize(segments_.size());
  for (size_t s = 0; s < segments_.size(); ++s) {
    if (!segments_[s].is_open() || !m.segments[s].sealed || maps_[s].is_mapped()) continue;
    // Sealed segments never change; the open one of a running volume may be cut short.
    auto map = FileMap::map(segments_[s], m.segments[s].bytes);
    if (!map) return map.status();
    maps_[s] = std::move(*map);
  }
  return Status::ok();
}

Result<bool> JournalView::read_segment(uint32_t segment, std::span<uint8_t> into, uint64_t at,
                                       bool cached_only, bool checked) const {
  const File& f = segments_[segment];
  // Through the mapping, a page not cached is a fault that waits for the disk: for data
  // not checked yet only once the pieces have been asked for (cached_only false). A
  // page that cannot be read falls back to pread, which reports why.
  const bool mapped = segment < maps_.size() && maps_[segment].is_mapped();
  if (mapped && (checked || !cached_only)) {
    if (maps_[segment].copy(into, at)) return true;
  } else if (cached_only) {
    return f.pread_cached(into, at);
  }
  REWIND_RETURN_IF_ERROR(f.pread_full(into, at));
  return true;
}

Result<bool> JournalView::fill_chunked(const IndexEntry& rec, uint32_t segment, uint32_t entry,
                                       uint64_t within, std::span<uint8_t> dst, bool cached_only,
                                       std::vector<uint8_t>* whole) const {
  auto read = [&](std::span<uint8_t> into, uint64_t at, bool checked) {
    return read_segment(segment, into, rec.payload_position() + at, cached_only, checked);
  };
  const auto [first, last, lo, hi] = chunks_of(rec, within, dst.size());
  if (chunks_checked(segment, first, last)) return read(dst, within, true);
  // The chunks, read in place when the piece is exactly those chunks.
  std::span<uint8_t> chunks = dst;
  if (lo != within || hi != within + dst.size()) {
    whole->resize(hi - lo);
    chunks = *whole;
  }
  auto got = read(chunks, lo, false);
  if (!got || !*got) return got;
  if (const std::optional<uint32_t> bad =
          first_differing_chunk(segment, rec.chunk_sums, first, chunks)) {
    // The record's own checksum decides: a mismatch is damage in the segment (an
    // error), or else in the index's chunk checksums (the data is good).
    std::vector<uint8_t> payload(rec.payload_length);
    REWIND_RETURN_IF_ERROR(segments_[segment].pread_full(payload, rec.payload_position()));
    const uint64_t from = uint64_t{*bad} * format::kIndexChunkSize;
    if (Status st = check_payload(segment, entry, payload); !st)
      return Status::corruption(fmt::format("{} (in payload bytes {}..{})", st.message(), from,
                                            std::min(from + format::kIndexChunkSize, hi)));
    std::memcpy(dst.data(), payload.data() + within, dst.size());
    return true;
  }
  {
    std::lock_guard lk(verified_mu_);
    for (uint32_t c = first; c <= last; ++c) chunks_verified_[segment][c] = true;
  }
  if (chunks.data() != dst.data())
    std::memcpy(dst.data(), chunks.data() + (within - lo), dst.size());
  return true;
}

Result<bool> JournalView::fill_encoded(const IndexEntry& rec, uint32_t segment, uint32_t entry,
                                       uint64_t within, std::span<uint8_t> dst, bool cached_only,
                                       std::vector<uint8_t>* whole) const {
  auto read = [&](std::span<uint8_t> into, uint64_t at, bool checked) {
    return read_segment(segment, into, rec.payload_position() + at, cached_only, checked);
  };
  auto damaged = [&](const Status& st) {
    return Status::corruption(fmt::format("segment {} offset {} seq {}: {}",
                                          history_->manifest().segments[segment].file, rec.position,
                                          rec.seq, st.message()));
  };
  const FrameSpan span = frames_of(rec.length, within, dst.size());
  std::vector<uint8_t> decoded(span.decoded_end - span.decoded_begin);
  if (checked(segment, entry)) {
    std::vector<uint8_t> table(frame_table_size(rec.length));
    auto got = read(table, 0, true);
    if (!got || !*got) return got;
    auto where = frame_bytes(table, rec.length, rec.payload_length, span);
    if (!where) return damaged(where.status());
    whole->resize(where->second - where->first);
    got = read(*whole, where->first, true);
    if (!got || !*got) return got;
    if (Status st = decode_frame_bytes(table, *whole, rec.length, span, decoded); !st)
      return damaged(st);
  } else {
    whole->resize(rec.payload_length);
    auto got = read(*whole, 0, false);
    if (!got || !*got) return got;
    REWIND_RETURN_IF_ERROR(check_payload(segment, entry, *whole));
    if (Status st = decode_frames(*whole, rec.length, span, decoded); !st) return damaged(st);
  }
  std::memcpy(dst.data(), decoded.data() + (within - span.decoded_begin), dst.size());
  return true;
}

namespace {

Status needs_keys(const Keyring* keys, const std::string& what) {
  if (keys == nullptr || keys->empty())
    return Status::invalid(fmt::format(
        "{} is sealed (shipped with ship-key=): give the key file it was sealed with (--key)",
        what));
  return Status::ok();
}

}  // namespace

Result<bool> JournalView::fill_sealed(const IndexEntry& rec, uint32_t segment, uint32_t entry,
                                      uint64_t within, std::span<uint8_t> dst,
                                      std::vector<uint8_t>* whole) const {
  const std::string& file = history_->manifest().segments[segment].file;
  REWIND_RETURN_IF_ERROR(
      needs_keys(keys_, fmt::format("segment {} offset {} seq {}", file, rec.position, rec.seq)));
  whole->resize(rec.payload_length);
  REWIND_RETURN_IF_ERROR(segments_[segment].pread_full(*whole, rec.payload_position()));
  REWIND_RETURN_IF_ERROR(check_payload(segment, entry, *whole));
  RecordHeader h;
  h.type = rec.type;
  h.flags = rec.flags;
  h.codec = rec.codec;
  h.seal = rec.seal;
  h.payload_length = rec.payload_length;
  h.seq = rec.seq;
  h.time_ns = rec.time_ns;
  h.offset = rec.offset;
  h.length = rec.length;
  h.payload_checksum = rec.payload_checksum;
  std::vector<uint8_t> body;
  RecordHeader unsealed;
  if (Status st = open_record(*keys_, history_->manifest().volume_id, h, *whole, &body, &unsealed);
      !st) {
    const std::string where =
        fmt::format("segment {} offset {} seq {}", file, rec.position, rec.seq);
    if (st.code() == Status::Code::kCorruption)
      return Status::corruption(fmt::format("{}: {}", where, st.message()));
    return Status::invalid(fmt::format("{}: {}", where, st.message()));
  }
  if (rec.codec == format::Codec::kNone) {
    if (within + dst.size() > body.size())
      return Status::corruption(
          fmt::format("segment {} offset {} seq {}: a sealed body of {} "
                      "bytes for a WRITE of {}",
                      file, rec.position, rec.seq, body.size(), rec.length));
    std::memcpy(dst.data(), body.data() + within, dst.size());
    return true;
  }
  const FrameSpan span = frames_of(rec.length, within, dst.size());
  std::vector<uint8_t> decoded(span.decoded_end - span.decoded_begin);
  if (Status st = decode_frames(body, rec.length, span, decoded); !st)
    return Status::corruption(
        fmt::format("segment {} offset {} seq {}: {}", file, rec.position, rec.seq, st.message()));
  std::memcpy(dst.data(), decoded.data() + (within - span.decoded_begin), dst.size());
  return true;
}

ViewFetcher::Range JournalView::sealed_slots(uint64_t start, uint64_t end) const {
  const uint64_t first = start / kSealedChunkBytes, last = (end - 1) / kSealedChunkBytes;
  const uint64_t stop =
      std::min((last + 1) * kSealedSlotBytes, history_->manifest().base_file_bytes());
  return ViewFetcher::Range{-1, first * kSealedSlotBytes, stop - first * kSealedSlotBytes};
}

Status JournalView::check_keys() const {
  if (!history_->sealed()) return Status::ok();
  REWIND_RETURN_IF_ERROR(needs_keys(keys_, history_->dir()));
  if (!history_->manifest().base_sealed || size() == 0) return Status::ok();
  std::shared_ptr<void> pinned;  // the first slot, fetched first through a fetcher
  if (fetcher_) {
    const ViewFetcher::Range slot = sealed_slots(0, 1);
    auto got = fetcher_->fetch(std::span(&slot, 1));
    if (!got) return got.status();
    pinned = std::move(*got);
  }
  uint8_t first = 0;
  return read_sealed_base(std::span(&first, 1), 0);
}

Status JournalView::read_sealed_base(std::span<uint8_t> dst, uint64_t offset) const {
  const Manifest& m = history_->manifest();
  REWIND_RETURN_IF_ERROR(needs_keys(keys_, fmt::format("the base snapshot {}", m.base_file)));
  std::lock_guard lk(base_mu_);
  std::vector<uint8_t> slot;
  for (uint64_t done = 0; done < dst.size();) {
    const uint64_t at = offset + done;
    const uint64_t index = at / kSealedChunkBytes;
    const uint64_t chunk_start = index * kSealedChunkBytes;
    const uint64_t chunk_length = std::min(kSealedChunkBytes, m.image_size - chunk_start);
    if (base_chunk_ != index) {
      base_chunk_ = UINT64_MAX;
      slot.resize(kSealedSlotBytes);
      size_t got = 0;
      REWIND_RETURN_IF_ERROR(base_.pread_full(slot, index * kSealedSlotBytes, &got));
      slot.resize(got);
      base_plain_.resize(chunk_length);
      REWIND_RETURN_IF_ERROR(
          open_base_chunk(*keys_, m.volume_id, m.base_seq, index, slot, base_plain_));
      base_chunk_ = index;
    }
    const uint64_t n = std::min<uint64_t>(dst.size() - done, chunk_start + chunk_length - at);
    std::memcpy(dst.data() + done, base_plain_.data() + (at - chunk_start), n);
    done += n;
  }
  return Status::ok();
}

}  // namespace rwd
