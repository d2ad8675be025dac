#include <fcntl.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/format/seal.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/restore.h"

namespace rwd {

namespace {

// The notes about a sealed segment's index, derived data that is rebuilt when missing
// or wrong, so not an error: missing, unreadable, or not what the records say.
void check_index(const std::string& journal_dir, const Manifest& m, const ManifestSegment& seg,
                 const SegmentEntries& scanned, VerifyReport* report) {
  auto idx = read_segment_index(journal_dir, m.volume_id, seg);
  if (!idx) {
    report->notes.push_back(
        fmt::format("{} (derived data: rebuilt from the records when next used)",
                    idx.status().errno_value() == ENOENT
                        ? fmt::format("index of segment {} is missing", seg.file)
                        : idx.status().message()));
  } else if (!index_agrees(*idx, scanned)) {
    report->notes.push_back(fmt::format(
        "index of segment {} disagrees with its records (rebuilt from the records when next used)",
        seg.file));
  }
}

// image == replay(base, journal) at `last_seq`, compared chunk by chunk without
// materialising either.
Status compare_image(const std::string& journal_dir, const std::string& image, uint64_t last_seq,
                     const Progress& progress) {
  auto history = JournalHistory::load(journal_dir, false, {});
  if (!history) return history.status();
  auto view =
      JournalView::open(std::make_shared<const JournalHistory>(std::move(*history)), last_seq);
  if (!view) return view.status();
  auto img = File::open(image, O_RDONLY);
  if (!img) return img.status();
  auto size = img->size();
  if (!size) return size.status();
  if (*size != (*view)->size())
    return Status::corruption(
        fmt::format("image {} is {} bytes but the volume is {}", image, *size, (*view)->size()));
  constexpr uint64_t kCompareBytes = 4ull << 20;
  std::vector<uint8_t> a, b;
  for (uint64_t pos = 0; pos < *size; pos += kCompareBytes) {
    uint64_t n = std::min(kCompareBytes, *size - pos);
    a.resize(n);
    b.resize(n);
    REWIND_RETURN_IF_ERROR((*view)->read(a, pos));
    REWIND_RETURN_IF_ERROR(img->pread_full(b, pos));
    if (a != b) {
      uint64_t i = 0;
      while (a[i] == b[i]) ++i;
      return Status::corruption(
          fmt::format("image {} differs from the replay of the journal at offset {} (newest state "
                      "seq {})",
                      image, pos + i, last_seq));
    }
    if (progress) progress(pos + n, *size);
  }
  return Status::ok();
}

}  // namespace

Status open_sealed_copy(const std::string& journal_dir, const Keyring& keys, bool with_base) {
  auto loaded = Manifest::load(journal_dir);
  if (!loaded) return loaded.status();
  const Manifest& m = *loaded;
  for (const ManifestSegment& seg : m.segments) {
    auto r = SegmentReader::open(segment_path(journal_dir, seg.file), seg.sealed);
    if (!r) return r.status();
    r->set_keys(&keys);
    RecordView rec;
    for (;;) {
      auto more = r->next(&rec);
      if (!more) return more.status();
      if (!*more) break;
      // A store could put a record in the clear in place of a sealed one.
      if (m.base_sealed && rec.header.seal == format::Seal::kNone)
        return Status::corruption(
            fmt::format("segment {} offset {} seq {}: a record in the clear in a sealed copy",
                        seg.file, rec.position, rec.header.seq));
    }
  }
  if (!m.base_sealed || !with_base) return Status::ok();
  auto base = File::open(base_path(journal_dir, m.base_file), O_RDONLY);
  if (!base) return base.status();
  std::vector<uint8_t> slot(kSealedSlotBytes), plain;
  for (uint64_t i = 0; i < sealed_chunk_count(m.image_size); ++i) {
    REWIND_RETURN_IF_ERROR(base->pread_full(slot, i * kSealedSlotBytes));
    plain.resize(std::min(kSealedChunkBytes, m.image_size - i * kSealedChunkBytes));
    REWIND_RETURN_IF_ERROR(open_base_chunk(keys, m.volume_id, m.base_seq, i, slot, plain));
  }
  return Status::ok();
}

Status verify_journal(const std::string& journal_dir, const std::string& image,
                      VerifyReport* report, const Progress& progress, const Keyring* keys) {
  auto m = Manifest::load(journal_dir);
  if (!m) return m.status();
  const std::string base = base_path(journal_dir, m->base_file);
  struct stat st;
  if (::stat(base.c_str(), &st) != 0)
    return Status::io_error(fmt::format("base snapshot {}", base), errno);
  const uint64_t base_bytes = m->base_file_bytes();
  if (static_cast<uint64_t>(st.st_size) != base_bytes)
    return Status::corruption(
        fmt::format("base snapshot {} is {} bytes, not the {} of {}", base, st.st_size, base_bytes,
                    m->base_sealed ? "the sealed form of the volume" : "the volume"));
  report->sealed = m->base_sealed;
  uint64_t total_bytes = 0, done = 0;
  for (const ManifestSegment& seg : m->segments) total_bytes += seg.bytes;

  report->first_seq = m->base_seq;
  uint64_t next_seq = m->base_seq + 1, last_time = m->base_time_ns;
  for (const ManifestSegment& seg : m->segments) {
    // Every record: header and payload checksums, seq continuity, time order; for a
    // sealed segment also its length and last seq against the manifest.
    auto scanned = scan_segment_entries(journal_dir, m->volume_id, seg);
    if (!scanned) return scanned.status();
    const auto& es = scanned->entries;
    if (seg.first_seq != next_seq)
      return Status::corruption(
          fmt::format("segment {} starts at seq {} but the journal before it ends at {}", seg.file,
                      seg.first_seq, next_seq - 1));
    if (!es.empty()) {
      if (es.front().time_ns < last_time)
        return Status::corruption(
            fmt::format("segment {} offset {} seq {}: time goes back across segments", seg.file,
                        es.front().position, es.front().seq));
      next_seq = es.back().seq + 1;
      last_time = es.back().time_ns;
    }
    if (seg.sealed) {
      if (es.size() != seg.records || (!es.empty() && (es.front().time_ns != seg.first_time_ns ||
                                                       es.back().time_ns != seg.last_time_ns)))
        return Status::corruption(
            fmt::format("segment {}: records or time range differ from the manifest", seg.file));
      check_index(journal_dir, *m, seg, *scanned, report);
    } else if (scanned->torn_tail) {
      report->notes.push_back(
          fmt::format("open segment {} ends in a torn tail at {} (discarded at the "
                      "next start)",
                      seg.file, *scanned->torn_tail));
    }
    for (const IndexEntry& e : es) report->sealed |= e.seal != format::Seal::kNone;
    report->segments++;
    report->records += es.size();
    report->bytes += seg.sealed ? seg.bytes : 0;
    done += seg.bytes;
    if (progress) progress(done, total_bytes);
  }
  report->last_seq = next_seq - 1;
  if (m->checkpoint_seq > report->last_seq)
    return Status::corruption(
        fmt::format("manifest checkpoint seq {} is after the last record, seq {}",
                    m->checkpoint_seq, report->last_seq));
  if (report->sealed) {
    if (keys == nullptr || keys->empty()) {
      report->contents_checked = false;
      report->notes.push_back(
          "the volume is sealed (shipped with ship-key=): its structure and the checksums of "
          "the bytes stored were checked, not its contents; give --key to check those too");
    } else {
      REWIND_RETURN_IF_ERROR(open_sealed_copy(journal_dir, *keys, true));
    }
  }
  if (image.empty()) return Status::ok();

  return compare_image(journal_dir, image, report->last_seq, progress);
}

}  // namespace rwd
