// JournalView: the volume as it was at a target, resolved to an extent map, read
// straight from the base snapshot and the segments without materialising anything.
//
// open() reads the manifest and each segment's index entries (headers only; the
// open segment of a running server is read record by record), resolves the target to
// a seq, and maps every byte range written at or before it to where its newest bytes
// live. Opening costs O(records) and does not depend on the size of the disk; reads
// and restores then touch each unique extent once.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rewind/base/extent_map.h"
#include "rewind/base/file.h"
#include "rewind/base/log.h"
#include "rewind/format/manifest.h"
#include "rewind/format/segment_index.h"
#include "rewind/replay/target.h"

namespace rwd {

class Keyring;

// Where the bytes of an extent live: a record's payload in a segment, or zeroes.
// Ranges the map does not cover come from the base snapshot.
struct ViewSource {
  bool zero = false;
  uint32_t segment = 0;  // index into the manifest's segments
  uint32_t entry = 0;    // index of the record in that segment's entries
  uint64_t delta = 0;    // offset of the extent's first byte within the record's payload
  // The record's checksums, as its index entry gives them: a read that checks bytes
  // against them (the image's) then looks up no entry. The map is read in offset
  // order, the entries lie in write order, so each look-up would be a cache miss.
  uint32_t payload_length = 0;                     // decoded
  uint32_t chunk_sums = IndexEntry::kNoChunkSums;  // as IndexEntry::chunk_sums
  uint64_t payload_checksum = 0;                   // of the payload as stored
  bool encoded = false;                            // stored with a codec, or sealed
  bool has_chunk_sums() const { return chunk_sums != IndexEntry::kNoChunkSums; }
  ViewSource advanced(uint64_t n) const {
    ViewSource v = *this;
    v.delta = zero ? 0 : delta + n;
    return v;
  }
};

struct MarkInfo {
  std::string name;
  uint64_t seq = 0;
  uint64_t time_ns = 0;
  // A group mark (rewind mark --with): the group's id and its volumes' ids.
  std::string group;
  std::vector<std::string> group_volumes;
};

// The records of a journal: every segment's entries and the restorable range.
class JournalHistory {
 public:
  // `repair`: rewrite damaged or missing segment indexes (never for verify).
  static Result<JournalHistory> load(const std::string& journal_dir, bool repair,
                                     const Logger& logger);
  // The same for the segments `manifest` lists (a copy of the journal's, perhaps with
  // fewer segments).
  static Result<JournalHistory> load(const std::string& journal_dir, Manifest manifest, bool repair,
                                     const Logger& logger);

  const std::string& dir() const { return dir_; }
  const Manifest& manifest() const { return manifest_; }
  const std::vector<SegmentEntries>& segments() const { return segments_; }
  uint64_t first_seq() const { return manifest_.base_seq; }
  uint64_t first_time_ns() const { return manifest_.base_time_ns; }
  uint64_t last_seq() const { return last_seq_; }
  uint64_t last_time_ns() const { return last_time_ns_; }
  const std::vector<MarkInfo>& marks() const { return marks_; }
  // Whether anything of it is sealed (seal.h): its base snapshot or any record. Reading
  // its bytes then needs the keys (JournalView::set_keys).
  bool sealed() const { return sealed_; }
  // "seq 0 (2026-...Z) .. seq 41 (2026-...Z)"
  std::string range_text() const;

  // Resolves a target to the seq it selects. *note says how (e.g. that a time after
  // the newest record gives the newest state, and at which seq it ended). A seq where
  // coalescing gave up the state resolves to the last exact one before it.
  Result<uint64_t> resolve(const Target& t, std::string* note) const;
  // The greatest seq <= `seq` whose state the journal holds exactly: every seq, but
  // for those from a superseded or compacted record (format::kFlagSuperseded,
  // kFlagCompacted) up to the next flush point, since the bytes that record lost live
  // on in later records. The newest is exact, unless `newest_exact` is false (for a
  // history loaded without its newest segments).
  uint64_t exact_at_or_before(uint64_t seq, bool newest_exact = true) const;

  // Calls f(entry, segment index) for each record with from < seq <= to, in seq order.
  template <class F>
  void for_each_entry(uint64_t from, uint64_t to, F&& f) const {
    for (size_t s = 0; s < segments_.size(); ++s) {
      const auto& es = segments_[s].entries;
      if (es.empty() || es.back().seq <= from || es.front().seq > to) continue;
      for (const IndexEntry& e : es)
        if (e.seq > from && e.seq <= to) f(e, static_cast<uint32_t>(s));
    }
  }

 private:
  Result<uint64_t> resolve_exact(const Target& t, std::string* note) const;
  std::string dir_;
  Manifest manifest_;
  std::vector<SegmentEntries> segments_;  // parallel to manifest_.segments
  std::vector<MarkInfo> marks_;
  uint64_t last_seq_ = 0;
  uint64_t last_time_ns_ = 0;
  bool sealed_ = false;
};

// A seam for views whose journal files are filled on demand (a volume in a bucket,
// ship/bucket_reader.h): before the view reads bytes of the base snapshot or of a
// segment it asks for them, and it holds what fetch() returns until it has read them
// (so that a bounded cache does not drop them meanwhile).
class ViewFetcher {
 public:
  struct Range {
    int64_t segment = -1;  // index into the manifest's segments; -1: the base snapshot
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  virtual ~ViewFetcher() = default;
  virtual Result<std::shared_ptr<void>> fetch(std::span<const Range> ranges) const = 0;
};

class JournalView {
 public:
  // `repair`: rewrite a damaged or missing segment index (a reader that must not
  // write, such as a log server serving a read-only token, rebuilds it in memory only).
  static Result<std::unique_ptr<JournalView>> open(const std::string& journal_dir,
                                                   const Target& target, const Logger& logger,
                                                   bool repair = true);
  // A view of an already loaded history at `seq` (which must be in its range).
  static Result<std::unique_ptr<JournalView>> open(std::shared_ptr<const JournalHistory> history,
                                                   uint64_t seq);
  JournalView(const JournalView&) = delete;
  JournalView& operator=(const JournalView&) = delete;

  uint64_t seq() const { return seq_; }
  uint64_t time_ns() const { return time_ns_; }
  uint64_t size() const { return history_->manifest().image_size; }
  const std::string& note() const { return note_; }
  const JournalHistory& history() const { return *history_; }
  const FlatExtentMap<ViewSource>& map() const { return map_; }
  const File& base() const { return base_; }
  const File& segment(uint32_t i) const { return segments_[i]; }

  // Sealed records and a sealed base snapshot are opened with these keys (which must
  // outlive the view). Without them, reading a sealed part is an error that says so.
  void set_keys(const Keyring* keys) { keys_ = keys; }
  // Whether those keys open it, tried at once where it is cheap: ok when nothing is
  // sealed; an error without keys, or when the first chunk of a sealed base snapshot
  // does not open with them (so that a wrong key is found before the first read).
  Status check_keys() const;

  // Reads go through `f` (see ViewFetcher) from now on.
  void set_fetcher(std::shared_ptr<const ViewFetcher> f) { fetcher_ = std::move(f); }

  // Reads the volume as it was at seq(). The first time a record's bytes are read they
  // are checked: against the chunk checksums of the segment index where it has them
  // (only the chunks read), else the whole payload against the record's checksum.
  // Damage is an error naming the segment, offset and seq, never wrong data.
  Status read(std::span<uint8_t> buf, uint64_t offset) const;
  // Asks the kernel to start reading what read(offset, length) will need (the pieces
  // of the base snapshot and of the segments), without waiting for it. With a fetcher,
  // fetches it (and waits).
  void prefetch(uint64_t offset, uint64_t length) const;
  // The sealed segments the view reads that are not the size the manifest gives them
  // (cut short or overwritten), one line each; found at open. A read that needs what
  // is lost fails its checks; a read that needs none of it (say, a restore taking those
  // parts from the image) succeeds, and only this says that the journal is damaged.
  const std::vector<std::string>& damaged_segments() const { return damaged_; }
  // Maps the sealed segments the view reads (FileMap), for a view that serves reads
  // for long: data read once is then copied straight from the page cache, without a
  // system call per piece. Reads of data not yet checked still ask the kernel for the
  // pieces first. Without it, reads use pread; so do reads of the segments not mapped
  // when a mapping fails (the first failure is returned, the mappings made are kept).
  Status map_segments();

  // Reads what the view shares with the volume's newest state from the volume's image
  // (the manifest's image_path), where the image still holds it, instead of from the
  // journal: a restore or export of a recent point then reads mostly one sequential
  // file rather than pieces from all over the journal. A piece is taken from the image
  // only if no later record in the journal changed its range and every byte of it is
  // covered by a checksum the index holds (its 4 KiB chunks, or a small record's whole
  // payload); each such piece is checked against those checksums, and one that does
  // not match (an image behind, ahead of or other than the journal) is read from the
  // journal. If most pieces do not match, the image is given up (logged once). Without
  // a usable image (none at that path, smaller than the volume) nothing changes; the
  // reason is logged at info level.
  void use_image(const Logger& logger);
  struct ImageReads {
    uint64_t pieces = 0;      // read from the image and matched
    uint64_t bytes = 0;       // their bytes
    uint64_t mismatched = 0;  // read from the image, not matched: read from the journal
    bool given_up = false;
  };
  ImageReads image_reads() const;

  // One run of a read: from the base snapshot (source null) or from the map.
  struct Piece {
    uint64_t start, end;
    const ViewSource* source;
    uint64_t adv;
  };

 private:
  JournalView() = default;
  // Asks the kernel to start reading what fill() will need for `p`.
  void advise(const Piece& p) const;
  // The bytes of the base or a segment that fill() will read for `p` (none for zeroes).
  std::optional<ViewFetcher::Range> needs(const Piece& p) const;
  // Fetches what `pieces` need, when there is a fetcher; the result is held while
  // they are read.
  Result<std::shared_ptr<void>> fetch_for(std::span<const Piece* const> pieces) const;
  // Whether `p` is to be read from the image (use_image()).
  bool in_image(const Piece& p) const;
  // Image reads span gaps of other pieces up to this long, rather than stop at them.
  static constexpr uint64_t kImageGap = 256 * 1024;
  // Reads the runs of `pieces` that are in_image() from the image into `buf` (which
  // holds the volume from `offset`) and checks them; adds the other pieces, and those
  // the image does not hold, to `rest`.
  void read_from_image(const std::vector<Piece>& pieces, std::span<uint8_t> buf, uint64_t offset,
                       std::vector<const Piece*>* rest) const;
  // The first chunk of a record's payload whose bytes in `chunks` (chunk `first` and
  // those after it, the last perhaps the payload's short end) differ from the segment
  // index's checksum of it (the record's chunk checksums begin at `chunk_sums` among
  // those of `segment`); none if all match.
  std::optional<uint32_t> first_differing_chunk(uint32_t segment, uint32_t chunk_sums,
                                                uint32_t first,
                                                std::span<const uint8_t> chunks) const;
  // Whether `bytes`, read from the image for `p`, match the index's checksums.
  bool image_holds(const Piece& p, std::span<const uint8_t> bytes) const;
  // Fills dst with the bytes of `p` (checking its record first if need be); with
  // `cached_only`, only if the page cache holds them all (false otherwise).
  Result<bool> fill(const Piece& p, std::span<uint8_t> dst, bool cached_only,
                    std::vector<uint8_t>* whole) const;
  bool checked(uint32_t segment, uint32_t entry) const;
  // Checks `payload`, the whole payload of a record, and remembers that it is good.
  Status check_payload(uint32_t segment, uint32_t entry, std::span<const uint8_t> payload) const;
  // Fills dst with the bytes at `within` of the payload of a record that has chunk
  // checksums, reading (and checking, once) only the chunks they lie in.
  Result<bool> fill_chunked(const IndexEntry& rec, uint32_t segment, uint32_t entry,
                            uint64_t within, std::span<uint8_t> dst, bool cached_only,
                            std::vector<uint8_t>* whole) const;
  // Fills dst with the bytes at `within` of the payload of a record stored with a
  // codec, decoding only the frames they lie in. The first read of the record reads
  // its whole stored payload and checks it; later ones read its frame table and those
  // frames.
  Result<bool> fill_encoded(const IndexEntry& rec, uint32_t segment, uint32_t entry,
                            uint64_t within, std::span<uint8_t> dst, bool cached_only,
                            std::vector<uint8_t>* whole) const;
  // Fills dst with the bytes at `within` of a sealed record: reads its stored payload
  // whole, checks it, opens it with the keys and decodes what dst needs.
  Result<bool> fill_sealed(const IndexEntry& rec, uint32_t segment, uint32_t entry, uint64_t within,
                           std::span<uint8_t> dst, std::vector<uint8_t>* whole) const;
  // Fills dst with the volume's bytes at `offset` from a sealed base snapshot.
  Status read_sealed_base(std::span<uint8_t> dst, uint64_t offset) const;
  // The bytes of the sealed base's file that hold the volume's bytes [start, end):
  // the slots of the chunks they lie in.
  ViewFetcher::Range sealed_slots(uint64_t start, uint64_t end) const;
  // Reads into `into` from segment `segment` at byte `at`: from its mapping where
  // there is one and the bytes were checked before (then most likely cached) or may be
  // waited for; else with `cached_only` only if the page cache holds them all.
  Result<bool> read_segment(uint32_t segment, std::span<uint8_t> into, uint64_t at,
                            bool cached_only, bool checked) const;
  // The chunks [first, last] of a record's payload that hold its bytes
  // [within, within + n), and the payload bytes [begin, end) they span.
  struct Chunks {
    uint32_t first, last;
    uint64_t begin, end;
  };
  static Chunks chunks_of(const IndexEntry& rec, uint64_t within, uint64_t n);
  bool chunks_checked(uint32_t segment, uint32_t first, uint32_t last) const;
  std::shared_ptr<const JournalHistory> history_;
  uint64_t seq_ = 0;
  uint64_t time_ns_ = 0;
  std::string note_;
  std::vector<std::string> damaged_;
  FlatExtentMap<ViewSource> map_;
  File base_;
  std::vector<File> segments_;                       // opened for those the map refers to
  std::vector<FileMap> maps_;                        // after map_segments(), of sealed ones
  mutable std::mutex verified_mu_;                   // guards verified_, chunks_verified_
  mutable std::vector<std::vector<bool>> verified_;  // [segment][entry]: payload checked
  // [segment][chunk checksum]: that chunk checked
  mutable std::vector<std::vector<bool>> chunks_verified_;
  // After use_image(): the image, and (on first use) the extents records after seq()
  // changed, in order ([start, end), disjoint).
  std::shared_ptr<const ViewFetcher> fetcher_;
  const Keyring* keys_ = nullptr;
  // The sealed base chunk opened last (its index, or UINT64_MAX), for reads in a row.
  mutable std::mutex base_mu_;
  mutable uint64_t base_chunk_ = UINT64_MAX;
  mutable std::vector<uint8_t> base_plain_;
  File image_;
  mutable std::once_flag changed_later_once_;
  mutable std::vector<std::pair<uint64_t, uint64_t>> changed_later_;
  Logger image_logger_;
  mutable std::atomic<uint64_t> image_pieces_{0}, image_bytes_{0}, image_mismatched_{0};
  mutable std::atomic<bool> image_given_up_{false};
};

}  // namespace rwd
