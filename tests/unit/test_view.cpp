#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <functional>
#include <map>
#include <random>
#include <tuple>

#include <fmt/format.h>

#include "random_history.h"
#include "rewind/base/file.h"
#include "rewind/base/hash.h"
#include "rewind/format/file_names.h"
#include "rewind/format/payload_codec.h"
#include "rewind/format/record.h"
#include "rewind/format/seal.h"
#include "rewind/format/segment_index.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/replay.h"
#include "rewind/replay/restore.h"
#include "rewind/replay/view.h"
#include "rewind/volume/volume.h"
#include "test_util.h"

using namespace rwd;

namespace {

constexpr uint64_t kSize = test::RandomHistory::kSize;
using History = test::RandomHistory;

std::vector<uint8_t> read_view(const JournalView& view) {
  std::vector<uint8_t> got(view.size());
  REQUIRE(view.read(got, 0).is_ok());
  return got;
}

// Eight reads of up to 9000 bytes at random unaligned offsets agree with `state`.
void check_small_reads(const JournalView& view, const std::vector<uint8_t>& state,
                       std::mt19937_64& rng) {
  for (int k = 0; k < 8; ++k) {
    const uint64_t off = rng() % kSize, len = 1 + rng() % std::min<uint64_t>(kSize - off, 9000);
    std::vector<uint8_t> part(len);
    REQUIRE(view.read(part, off).is_ok());
    CHECK(std::equal(part.begin(), part.end(), state.begin() + static_cast<long>(off)));
  }
}

// The journal `from` as a log server would store it had ship-key= been turned on and
// its key rotated along the way, in `to`: the records whose seq % 3 is 0 as they are
// (raw or compressed), the others sealed with `a` (seq % 3 == 1) or `b`; the base
// snapshot in the clear. The segment indexes are left for the readers to rebuild.
void store_sealed_copy(const std::string& from, const std::string& to, const SealKey& a,
                       const SealKey& b) {
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
  auto m = Manifest::load(to);
  REQUIRE(m.is_ok());
  for (ManifestSegment& seg : m->segments) {
    const std::string path = segment_path(to, seg.file);
    std::filesystem::remove(segment_path(to, index_file_name(seg.file)));
    SegmentHeader header;
    std::vector<std::pair<EncodedHeader, std::vector<uint8_t>>> records;
    {
      auto r = SegmentReader::open(path, seg.sealed);
      REQUIRE(r.is_ok());
      header = r->header();
      RecordView rec;
      for (;;) {
        auto more = r->next(&rec);
        REQUIRE(more.is_ok());
        if (!*more) break;
        RecordHeader h = rec.header;
        std::vector<uint8_t> stored(rec.stored.begin(), rec.stored.end());
        if (h.seq % 3 != 0) {
          std::vector<uint8_t> sealed;
          seal_record(h.seq % 3 == 1 ? a : b, m->volume_id, &h, stored, &sealed);
          stored = std::move(sealed);
        }
        records.emplace_back(encode_header(h), std::move(stored));
      }
    }
    std::filesystem::remove(path);
    auto w = SegmentWriter::create(path, header, 0);
    REQUIRE(w.is_ok());
    for (const auto& [h, stored] : records) {
      const RecordRef ref{h.data(), stored};
      REQUIRE(w->append(std::span(&ref, 1)).is_ok());
    }
    REQUIRE(w->seal().is_ok());
    if (seg.sealed) seg.bytes = w->end();
  }
  REQUIRE(m->store(to).is_ok());
}

}  // namespace

TEST_CASE("a view at any seq equals the reference state across random histories",
          "[view][property]") {
  auto seed = GENERATE(range(1, 61));
  CAPTURE(seed);
  History h(static_cast<uint64_t>(seed), 120);
  auto history = JournalHistory::load(h.journal, true, {});
  REQUIRE(history.is_ok());
  REQUIRE(history->last_seq() == h.states.size() - 1);
  auto shared = std::make_shared<const JournalHistory>(std::move(*history));
  std::mt19937_64 rng(seed * 7919);
  for (int t = 0; t < 12; ++t) {
    uint64_t seq = t == 0 ? 0 : t == 1 ? h.states.size() - 1 : rng() % h.states.size();
    CAPTURE(seq);
    auto view = JournalView::open(shared, seq);
    REQUIRE(view.is_ok());
    CHECK(read_view(**view) == h.states[seq]);
    // Unaligned partial reads agree too.
    uint64_t off = rng() % kSize, len = 1 + rng() % (kSize - off);
    std::vector<uint8_t> part(len);
    REQUIRE((*view)->read(part, off).is_ok());
    CHECK(std::equal(part.begin(), part.end(), h.states[seq].begin() + static_cast<long>(off)));
  }
}

TEST_CASE("views over journals of compressed and raw records equal the reference state",
          "[view][codec][property]") {
  auto seed = GENERATE(range(1, 21));
  CAPTURE(seed);
  History h(static_cast<uint64_t>(seed), 150, 25, 0, false, Compression{format::Codec::kZstd, 1});
  auto history = JournalHistory::load(h.journal, true, {});
  REQUIRE(history.is_ok());
  // Both forms are there, and compressed records with chunk checksums among them.
  size_t encoded = 0, raw = 0, encoded_chunked = 0;
  for (const SegmentEntries& seg : history->segments())
    for (const IndexEntry& e : seg.entries) {
      if (e.type != format::RecordType::kWrite || (e.flags & format::kFlagSuperseded)) continue;
      if (e.codec == format::Codec::kZstd) {
        ++encoded;
        encoded_chunked += e.has_chunk_sums();
        CHECK(e.payload_length < e.length);
      } else {
        ++raw;
      }
    }
  CHECK(encoded > 10);
  CHECK(raw > 10);
  CHECK(encoded_chunked > 0);
  auto shared = std::make_shared<const JournalHistory>(std::move(*history));
  std::mt19937_64 rng(static_cast<uint64_t>(seed) * 104729);
  for (int t = 0; t < 12; ++t) {
    const uint64_t seq = t == 0 ? h.states.size() - 1 : rng() % h.states.size();
    CAPTURE(seq);
    auto view = JournalView::open(shared, seq);
    REQUIRE(view.is_ok());
    // Small unaligned reads first (the records are checked whole on first use, later
    // ones read their frames only), then the whole volume.
    check_small_reads(**view, h.states[seq], rng);
    CHECK(read_view(**view) == h.states[seq]);
    CHECK(read_view(**view) == h.states[seq]);
  }
  // The indexes rebuilt from the records say what the journal wrote.
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  for (const ManifestSegment& seg : m->segments) {
    if (!seg.sealed) continue;
    auto index = read_segment_index(h.journal, m->volume_id, seg);
    REQUIRE(index.is_ok());
    CHECK(index->index_version == format::kIndexVersion);
    auto scanned = scan_segment_entries(h.journal, m->volume_id, seg);
    REQUIRE(scanned.is_ok());
    CHECK(index_agrees(*index, *scanned));
  }
  // Restore, and replay onto an image, agree with the reference too.
  auto view = JournalView::open(h.journal, Target::newest(), {});
  REQUIRE(view.is_ok());
  REQUIRE(restore_to_file(**view, h.dir / "restored.img", {}).is_ok());
  CHECK(test::read_file(h.dir / "restored.img") == h.states.back());
  REQUIRE(replay_newest(h.journal, h.dir / "replayed.img").is_ok());
  CHECK(test::read_file(h.dir / "replayed.img") == h.states.back());
  test::check_intact(h.journal, h.image);
}

TEST_CASE("views over journals of clear, compressed and sealed records equal the reference",
          "[view][codec][seal][property]") {
  auto seed = GENERATE(range(1, 9));
  CAPTURE(seed);
  History h(static_cast<uint64_t>(seed), 150, 25, 0, false, Compression{format::Codec::kZstd, 1});
  const SealKey a = *generate_key_file(h.dir / "a.key");
  const SealKey b = *generate_key_file(h.dir / "b.key");
  const std::string copy = h.dir / "copy";
  store_sealed_copy(h.journal, copy, a, b);
  auto history = JournalHistory::load(copy, true, {});
  REQUIRE(history.is_ok());
  CHECK(history->sealed());
  // Every form is there: clear raw and compressed, sealed raw and compressed; sealed
  // entries never carry checksums of their clear bytes.
  std::map<std::pair<bool, bool>, size_t> forms;
  for (const SegmentEntries& seg : history->segments())
    for (const IndexEntry& e : seg.entries) {
      if (e.type != format::RecordType::kWrite || (e.flags & format::kFlagSuperseded)) continue;
      const bool sealed = e.seal != format::Seal::kNone;
      CHECK(sealed == (e.seq % 3 != 0));
      if (sealed) CHECK_FALSE(e.has_chunk_sums());
      ++forms[{sealed, e.codec == format::Codec::kZstd}];
    }
  for (bool sealed : {false, true})
    for (bool zstd : {false, true}) {
      CAPTURE(sealed, zstd);
      CHECK(forms[{sealed, zstd}] > 3);
    }
  auto shared = std::make_shared<const JournalHistory>(std::move(*history));
  const Keyring both({a, b}), only_a({a});
  std::mt19937_64 rng(static_cast<uint64_t>(seed) * 7877);
  for (int t = 0; t < 12; ++t) {
    const uint64_t seq = t == 0 ? h.states.size() - 1 : rng() % h.states.size();
    CAPTURE(seq);
    auto view = JournalView::open(shared, seq);
    REQUIRE(view.is_ok());
    (*view)->set_keys(&both);
    check_small_reads(**view, h.states[seq], rng);
    CHECK(read_view(**view) == h.states[seq]);
  }
  // The newest state needs both keys: without keys, or with the older alone, a read
  // fails and names the key it lacks.
  auto view = JournalView::open(shared, shared->last_seq());
  REQUIRE(view.is_ok());
  std::vector<uint8_t> got(kSize);
  Status none = (*view)->read(got, 0);
  CHECK_FALSE(none.is_ok());
  CHECK_THAT(none.message(), Catch::Contains("sealed"));
  (*view)->set_keys(&only_a);
  Status partial = (*view)->read(got, 0);
  CHECK_FALSE(partial.is_ok());
  CHECK_THAT(partial.message(), Catch::Contains(key_id_hex(b.id)));
  // Restore and verify with both keys.
  (*view)->set_keys(&both);
  REQUIRE(restore_to_file(**view, h.dir / "restored.img", {}).is_ok());
  CHECK(test::read_file(h.dir / "restored.img") == h.states.back());
  VerifyReport report;
  Status verified = verify_journal(copy, "", &report, {}, &both);
  INFO(verified.message());
  CHECK(verified.is_ok());
}

TEST_CASE("a damaged compressed record is never served", "[view][codec][errors]") {
  History h(8, 60, 0, 0, false, Compression{format::Codec::kZstd, 1});
  auto history = JournalHistory::load(h.journal, true, {});
  REQUIRE(history.is_ok());
  // The newest compressed record that is still visible at the end: damage a byte of
  // its frames.
  const IndexEntry* target = nullptr;
  size_t segment = 0;
  for (size_t s = 0; s < history->segments().size(); ++s)
    for (const IndexEntry& e : history->segments()[s].entries)
      if (e.codec == format::Codec::kZstd) target = &e, segment = s;
  REQUIRE(target != nullptr);
  const IndexEntry e = *target;
  const std::string file = h.journal + "/segments/" + history->manifest().segments[segment].file;
  test::flip_bit(file, e.payload_position() + e.payload_length - 1, 3);
  auto view = JournalView::open(h.journal, Target::at_seq(e.seq), {});
  REQUIRE(view.is_ok());
  std::vector<uint8_t> buf(e.length);
  Status st = (*view)->read(buf, e.offset);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.message().find(fmt::format("seq {}: payload checksum mismatch", e.seq)) !=
        std::string::npos);
}

TEST_CASE("journals of format version 1 still open", "[view][codec]") {
  History h(9, 40);
  // Label every segment version 1, as a build before codecs wrote them.
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  for (const ManifestSegment& seg : m->segments) {
    const std::string file = h.journal + "/segments/" + seg.file;
    auto bytes = test::read_file(file);
    REQUIRE(bytes.size() >= format::kSegmentHeaderSize);
    put_u32(bytes.data() + 8, 1);
    put_u64(bytes.data() + format::kSegmentHeaderChecksumOffset,
            XXH3_64bits(bytes.data(), format::kSegmentHeaderChecksumOffset));
    test::write_file(file, bytes);
  }
  CHECK(test::state_at(h.journal, h.states.size() - 1) == h.states.back());
  test::check_intact(h.journal, h.image);
  // A version from the future is refused with what to do.
  const std::string first = h.journal + "/segments/" + m->segments[0].file;
  auto bytes = test::read_file(first);
  put_u32(bytes.data() + 8, format::kFormatVersion + 1);
  put_u64(bytes.data() + format::kSegmentHeaderChecksumOffset,
          XXH3_64bits(bytes.data(), format::kSegmentHeaderChecksumOffset));
  test::write_file(first, bytes);
  VerifyReport report;
  Status st = verify_journal(h.journal, h.image, &report, {});
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.message().find("a newer version needs a newer rewind") != std::string::npos);
}

TEST_CASE("restore writes each target's state to a new file", "[view][restore]") {
  History h(99, 200);
  for (uint64_t seq : {uint64_t{0}, uint64_t{1}, uint64_t{57}, uint64_t{200}}) {
    CAPTURE(seq);
    auto view = JournalView::open(h.journal, Target::at_seq(seq), {});
    REQUIRE(view.is_ok());
    std::string out = h.dir / fmt::format("r{}.img", seq);
    REQUIRE(restore_to_file(**view, out, {}).is_ok());
    CHECK(test::read_file(out) == h.states[seq]);
    CHECK_FALSE(std::filesystem::exists(out + ".rewind-tmp"));
    // An existing OUT is refused without --force and left alone.
    Status again = restore_to_file(**view, out, {});
    CHECK(again.message().find("exists (RestoreOptions::force replaces it)") != std::string::npos);
    RestoreOptions force;
    force.force = true;
    CHECK(restore_to_file(**view, out, force).is_ok());
  }
}

TEST_CASE("a time target selects every record at or before that time", "[view][target]") {
  History h(5, 50);
  auto history = JournalHistory::load(h.journal, true, {});
  REQUIRE(history.is_ok());
  // Record times, from the journal itself.
  std::vector<std::pair<uint64_t, uint64_t>> seq_time;
  history->for_each_entry(0, history->last_seq(), [&](const IndexEntry& e, uint32_t) {
    seq_time.emplace_back(e.seq, e.time_ns);
  });
  REQUIRE(seq_time.size() == 50);
  std::string note;
  for (auto [seq, time] : seq_time) {
    // The last record with this time (times may repeat).
    uint64_t last_with_time = seq;
    for (auto [s2, t2] : seq_time)
      if (t2 == time) last_with_time = std::max(last_with_time, s2);
    auto r = history->resolve(Target::at_time(time, "t"), &note);
    REQUIRE(r.is_ok());
    CHECK(*r == last_with_time);
  }
  auto before = history->resolve(Target::at_time(history->first_time_ns() - 1, "early"), &note);
  REQUIRE_FALSE(before.is_ok());
  CHECK(before.status().message().find(
            "before the oldest restorable point; the restorable range is seq 0") !=
        std::string::npos);
  auto after =
      history->resolve(Target::at_time(history->last_time_ns() + 1'000'000'000, "later"), &note);
  REQUIRE(after.is_ok());
  CHECK(*after == 50);
  CHECK(note.find("newest state, ending at seq 50") != std::string::npos);
  auto no_seq = history->resolve(Target::at_seq(51), &note);
  CHECK(no_seq.status().message().find("seq 51 does not exist; the journal ends at seq 50") !=
        std::string::npos);
  auto no_mark = history->resolve(Target::at_mark("nope"), &note);
  CHECK(no_mark.status().message().find("no mark named 'nope'") != std::string::npos);
}

TEST_CASE("a missing or damaged segment index is rebuilt from the records", "[view][index]") {
  History h(11, 100);
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  REQUIRE(m->segments.size() >= 3);
  const std::string idx0 = segment_path(h.journal, index_file_name(m->segments[0].file));
  const std::string idx1 = segment_path(h.journal, index_file_name(m->segments[1].file));
  auto good0 = test::read_file(idx0);
  std::filesystem::remove(idx0);
  test::flip_bit(idx1, 100, 4);
  std::string log;
  auto history = JournalHistory::load(h.journal, true,
                                      [&](LogLevel, const std::string& s) { log += s + "\n"; });
  REQUIRE(history.is_ok());
  CHECK(log.find(fmt::format("rebuilt the index of segment {} from its records (missing)",
                             m->segments[0].file)) != std::string::npos);
  CHECK(log.find(fmt::format("rebuilt the index of segment {}", m->segments[1].file)) !=
        std::string::npos);
  CHECK(test::read_file(idx0) == good0);  // rewritten identically
  auto view = JournalView::open(std::make_shared<const JournalHistory>(std::move(*history)), 100);
  REQUIRE(view.is_ok());
  CHECK(read_view(**view) == h.states[100]);
}

TEST_CASE("damaged payloads are never served or restored", "[view][errors]") {
  History h(21, 40);
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  auto history = JournalHistory::load(h.journal, true, {});
  REQUIRE(history.is_ok());
  // Damage the payload of the newest WRITE that still shows in the newest state.
  const IndexEntry* victim = nullptr;
  uint32_t victim_seg = 0;
  history->for_each_entry(0, 40, [&](const IndexEntry& e, uint32_t s) {
    if (e.type == format::RecordType::kWrite) {
      victim = &e;
      victim_seg = s;
    }
  });
  REQUIRE(victim != nullptr);
  const std::string seg = segment_path(h.journal, m->segments[victim_seg].file);
  test::flip_bit(seg, victim->payload_position(), 0);
  auto view = JournalView::open(h.journal, Target::at_seq(40), {});
  REQUIRE(view.is_ok());  // opening reads indexes only
  std::vector<uint8_t> all(kSize);
  Status st = (*view)->read(all, 0);
  REQUIRE(st.code() == Status::Code::kCorruption);
  CHECK(st.message().find(fmt::format("segment {} offset {} seq {}", m->segments[victim_seg].file,
                                      victim->position, victim->seq)) != std::string::npos);
  std::string out = h.dir / "out.img";
  Status rs = restore_to_file(**view, out, {});
  CHECK(rs.code() == Status::Code::kCorruption);
  CHECK_FALSE(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out + ".rewind-tmp"));
  // Targets before the damaged record still restore.
  auto older = JournalView::open(h.journal, Target::at_seq(victim->seq - 1), {});
  REQUIRE(older.is_ok());
  CHECK(read_view(**older) == h.states[victim->seq - 1]);
}

TEST_CASE("changed extents between two points cover exactly the records between them",
          "[view][diff]") {
  History h(31, 60);
  auto history = JournalHistory::load(h.journal, true, {});
  REQUIRE(history.is_ok());
  for (auto [a, b] : {std::pair<uint64_t, uint64_t>{0, 60}, {10, 20}, {33, 33}, {59, 60}}) {
    CAPTURE(a, b);
    auto ext = changed_extents(*history, a, b);
    std::vector<bool> changed(kSize, false);
    for (const auto& e : ext)
      for (uint64_t i = e.offset; i < e.offset + e.length; ++i) changed[i] = true;
    // Every byte whose value differs is listed; every listed byte was written.
    std::vector<bool> touched(kSize, false);
    history->for_each_entry(a, b, [&](const IndexEntry& e, uint32_t) {
      for (uint64_t i = e.offset; i < e.offset + e.length; ++i) touched[i] = true;
    });
    CHECK(changed == touched);
    for (uint64_t i = 0; i < kSize; ++i)
      if (h.states[a][i] != h.states[b][i]) REQUIRE(changed[i]);
    for (size_t k = 1; k < ext.size(); ++k)
      CHECK(ext[k].offset > ext[k - 1].offset + ext[k - 1].length);
  }
}

namespace {

// A volume whose first record, a 64 KiB WRITE at 0, is overwritten by a second one
// except for its first 4 KiB; each record seals a segment of its own.
struct PartlyOverwritten {
  static constexpr uint64_t kVolume = 256 * 1024;
  test::TempDir dir;
  std::string image = dir / "disk.img";
  std::string journal = dir / "disk.rewind";
  std::vector<uint8_t> state = std::vector<uint8_t>(kVolume, 0);

  PartlyOverwritten() {
    test::write_file(image, state);
    VolumeOptions o;
    o.image_path = image;
    o.journal_dir = journal;
    o.journal.segment_size = 16 * 1024;
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();
    for (auto [off, len, seed] :
         {std::tuple<uint64_t, uint64_t, uint64_t>{0, 65536, 1}, {4096, 61440, 2}}) {
      auto data = test::pattern(len, seed);
      REQUIRE((*v)->write(data, off, true).is_ok());
      std::copy(data.begin(), data.end(), state.begin() + static_cast<long>(off));
    }
    REQUIRE((*v)->close().is_ok());
  }
  // The first record: its segment and its entry.
  std::pair<ManifestSegment, IndexEntry> first() const {
    auto m = Manifest::load(journal);
    REQUIRE(m.is_ok());
    auto es = load_segment_entries(journal, m->volume_id, m->segments.front(), false, {});
    REQUIRE(es.is_ok());
    REQUIRE(es->entries.front().type == format::RecordType::kWrite);
    return {m->segments.front(), es->entries.front()};
  }
};

}  // namespace

TEST_CASE("the index keeps a checksum per chunk of each record longer than a chunk",
          "[view][index]") {
  History h(41, 120);
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  size_t with_sums = 0;
  for (const ManifestSegment& seg : m->segments) {
    CAPTURE(seg.file);
    auto index = read_segment_index(h.journal, m->volume_id, seg);
    REQUIRE(index.is_ok());
    CHECK(index->index_version == format::kIndexVersion);
    // What the flusher wrote is what a scan of the records computes from them.
    auto scanned = scan_segment_entries(h.journal, m->volume_id, seg);
    REQUIRE(scanned.is_ok());
    CHECK(index->entries == scanned->entries);
    CHECK(index->chunk_sums == scanned->chunk_sums);
    auto f = File::open(segment_path(h.journal, seg.file), O_RDONLY);
    REQUIRE(f.is_ok());
    for (const IndexEntry& e : index->entries) {
      const bool wanted = e.type == format::RecordType::kWrite &&
                          !(e.flags & format::kFlagSuperseded) &&
                          e.payload_length > format::kIndexChunkSize;
      REQUIRE(e.has_chunk_sums() == wanted);
      if (!wanted) continue;
      ++with_sums;
      std::vector<uint8_t> payload(e.payload_length);
      REQUIRE(f->pread_full(payload, e.payload_position()).is_ok());
      for (uint32_t c = 0; c < chunk_count(e.payload_length); ++c) {
        const size_t at = size_t{c} * format::kIndexChunkSize;
        const size_t n = std::min<size_t>(format::kIndexChunkSize, payload.size() - at);
        CHECK(index->chunk_sums[e.chunk_sums + c] == XXH3_64bits(payload.data() + at, n));
      }
    }
  }
  CHECK(with_sums > 0);
}

TEST_CASE("a version 1 index without chunk checksums is still read", "[view][index]") {
  History h(43, 100);
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  // Rewrite every index as version 1: the 48-byte header, no index flags, no chunk
  // checksums, a new trailer.
  for (const ManifestSegment& seg : m->segments) {
    const std::string path = segment_path(h.journal, index_file_name(seg.file));
    auto v2 = test::read_file(path);
    std::vector<uint8_t> v1(v2.begin(), v2.begin() + format::kIndexHeaderSizeV1);
    put_u32(v1.data() + 8, 1);
    for (uint64_t i = 0; i < seg.records; ++i) {
      auto e =
          v2.begin() + static_cast<long>(format::kIndexHeaderSize + i * format::kIndexEntrySize);
      v1.insert(v1.end(), e, e + format::kIndexEntrySize);
      v1[v1.size() - format::kIndexEntrySize + 42] = 0;
    }
    v1.resize(v1.size() + 8);
    put_u64(v1.data() + v1.size() - 8, XXH3_64bits(v1.data(), v1.size() - 8));
    test::write_file(path, v1);
    auto index = read_segment_index(h.journal, m->volume_id, seg);
    REQUIRE(index.is_ok());
    CHECK(index->index_version == 1);
    CHECK(index->chunk_sums.empty());
    auto scanned = scan_segment_entries(h.journal, m->volume_id, seg);
    REQUIRE(scanned.is_ok());
    CHECK(index_agrees(*index, *scanned));
  }
  // Views read every record whole; verify finds nothing wrong.
  for (uint64_t seq : {uint64_t{37}, uint64_t{100}}) {
    auto view = JournalView::open(h.journal, Target::at_seq(seq), {});
    REQUIRE(view.is_ok());
    CHECK(read_view(**view) == h.states[seq]);
  }
  VerifyReport report;
  REQUIRE(verify_journal(h.journal, "", &report, {}).is_ok());
  CHECK(report.notes.empty());
  // A start that checks every record rewrites them as version 2.
  VolumeOptions o;
  o.image_path = h.image;
  o.journal_dir = h.journal;
  o.full_check = true;
  std::string log;
  auto v = Volume::open(o, [&](LogLevel, const std::string& s) { log += s + "\n"; });
  REQUIRE(v.is_ok());
  REQUIRE((*v)->close().is_ok());
  CHECK(log.find("is of version 1; rewritten with chunk checksums") != std::string::npos);
  auto again = read_segment_index(h.journal, m->volume_id, m->segments.front());
  REQUIRE(again.is_ok());
  CHECK(again->index_version == format::kIndexVersion);
}

TEST_CASE("a read checks only the chunks of a record it needs", "[view][index][errors]") {
  PartlyOverwritten p;
  auto [seg, rec] = p.first();
  REQUIRE(rec.has_chunk_sums());
  const std::string seg_path = segment_path(p.journal, seg.file);
  // Damage in the part of the first record that the second overwrote: the newest state
  // needs only the first chunk, so it reads and restores as before.
  test::flip_bit(seg_path, rec.payload_position() + 5 * format::kIndexChunkSize + 17, 3);
  {
    auto view = JournalView::open(p.journal, Target::newest(), {});
    REQUIRE(view.is_ok());
    CHECK(read_view(**view) == p.state);
    const std::string out = p.dir / "out.img";
    REQUIRE(restore_to_file(**view, out, {}).is_ok());
    CHECK(test::read_file(out) == p.state);
  }
  // The state before the overwrite needs that chunk: an error naming the record and
  // where in its payload.
  {
    auto view = JournalView::open(p.journal, Target::at_seq(rec.seq), {});
    REQUIRE(view.is_ok());
    std::vector<uint8_t> buf(2 * format::kIndexChunkSize);
    CHECK((*view)->read(buf, 0).is_ok());  // chunks 0 and 1 are whole
    Status st = (*view)->read(buf, 4 * format::kIndexChunkSize);
    REQUIRE(st.code() == Status::Code::kCorruption);
    CHECK(st.message() == fmt::format("segment {} offset {} seq {}: payload checksum mismatch (in "
                                      "payload bytes 20480..24576)",
                                      seg.file, rec.position, rec.seq));
  }
  // `rewind verify` reads every record whole, and finds it.
  VerifyReport report;
  Status vs = verify_journal(p.journal, "", &report, {});
  CHECK(vs.code() == Status::Code::kCorruption);
  CHECK(vs.message().find(fmt::format("seq {}", rec.seq)) != std::string::npos);
}

TEST_CASE("a wrong chunk checksum in an index defers to the record's own checksum",
          "[view][index][errors]") {
  PartlyOverwritten p;
  auto [seg, rec] = p.first();
  auto m = Manifest::load(p.journal);
  REQUIRE(m.is_ok());
  auto index = read_segment_index(p.journal, m->volume_id, seg);
  REQUIRE(index.is_ok());
  // An index that is whole (its trailer holds) but says the wrong thing of chunk 0.
  index->chunk_sums[rec.chunk_sums] ^= 1;
  REQUIRE(write_segment_index(p.journal, seg.file, m->volume_id, seg.first_seq, index->entries,
                              index->chunk_sums)
              .is_ok());
  auto view = JournalView::open(p.journal, Target::newest(), {});
  REQUIRE(view.is_ok());
  CHECK(read_view(**view) == p.state);
  // With the payload damaged as well, the record's checksum fails: an error.
  test::flip_bit(segment_path(p.journal, seg.file), rec.payload_position() + 100, 0);
  auto damaged = JournalView::open(p.journal, Target::newest(), {});
  REQUIRE(damaged.is_ok());
  std::vector<uint8_t> buf(4096);
  Status st = (*damaged)->read(buf, 0);
  REQUIRE(st.code() == Status::Code::kCorruption);
  CHECK(st.message().find(fmt::format("segment {} offset {} seq {}: payload checksum mismatch",
                                      seg.file, rec.position, rec.seq)) != std::string::npos);
  // verify reports the index as disagreeing with the records (derived data, rebuilt).
  test::flip_bit(segment_path(p.journal, seg.file), rec.payload_position() + 100, 0);
  VerifyReport report;
  REQUIRE(verify_journal(p.journal, "", &report, {}).is_ok());
  REQUIRE(report.notes.size() == 1);
  CHECK(report.notes[0].find(fmt::format("index of segment {} disagrees with its records",
                                         seg.file)) != std::string::npos);
}

TEST_CASE("an index whose chunk checksums do not fit its entries is rebuilt", "[view][index]") {
  PartlyOverwritten p;
  auto [seg, rec] = p.first();
  auto m = Manifest::load(p.journal);
  REQUIRE(m.is_ok());
  const std::string path = segment_path(p.journal, index_file_name(seg.file));
  const auto good = test::read_file(path);
  // Each damage keeps the trailer whole, so the checks behind it are what find it.
  auto rewrite = [&](auto&& change) {
    auto bytes = good;
    change(bytes);
    put_u64(bytes.data() + bytes.size() - 8, XXH3_64bits(bytes.data(), bytes.size() - 8));
    test::write_file(path, bytes);
  };
  const size_t entry0 = format::kIndexHeaderSize;
  const std::vector<std::pair<std::string, std::function<void(std::vector<uint8_t>&)>>> damages = {
      {"chunk checksums do not match the entries",
       [&](std::vector<uint8_t>& b) {  // one checksum more than the entry has
         b.insert(b.end() - 8, 8, 0);
         put_u64(b.data() + 56, get_u64(b.data() + 56) + 1);
       }},
      {"entries do not match the segment",
       [&](std::vector<uint8_t>& b) { b[entry0 + 42] = 0x04; }},  // an unknown index flag
      {"entries do not match the segment",
       [&](std::vector<uint8_t>& b) {  // sealed, yet with chunk checksums of its data
         b[entry0 + 42] = format::kIndexFlagChunkSums | format::kIndexFlagSealed;
       }},
      {"entries do not match the segment",
       [&](std::vector<uint8_t>& b) {  // chunk checksums claimed by a MARK
         b[entry0 + 40] = static_cast<uint8_t>(format::RecordType::kMark);
       }},
      {"has an unknown chunk size",
       [&](std::vector<uint8_t>& b) { put_u32(b.data() + 48, 65536); }},
  };
  for (const auto& [why, change] : damages) {
    CAPTURE(why);
    rewrite(change);
    auto index = read_segment_index(p.journal, m->volume_id, seg);
    REQUIRE_FALSE(index.is_ok());
    CHECK(index.status().message() == fmt::format("index {}: {}", index_file_name(seg.file), why));
    std::string log;
    auto loaded = load_segment_entries(p.journal, m->volume_id, seg, true,
                                       [&](LogLevel, const std::string& s) { log += s; });
    REQUIRE(loaded.is_ok());
    CHECK(log.find("rebuilt the index of segment") != std::string::npos);
    CHECK(test::read_file(path) == good);
  }
}

TEST_CASE("a view with mapped segments reads as one without and survives a segment cut short",
          "[view][filemap]") {
  History h(47, 150);
  auto view = JournalView::open(h.journal, Target::newest(), {});
  REQUIRE(view.is_ok());
  REQUIRE((*view)->map_segments().is_ok());
  // Twice: the first read checks every record (read through the mappings once the
  // pieces were asked for), the second copies what was checked.
  CHECK(read_view(**view) == h.states.back());
  CHECK(read_view(**view) == h.states.back());
  std::mt19937_64 rng(47);
  for (int i = 0; i < 50; ++i) {
    uint64_t off = rng() % kSize, len = 1 + rng() % (kSize - off);
    std::vector<uint8_t> part(len);
    REQUIRE((*view)->read(part, off).is_ok());
    CHECK(std::equal(part.begin(), part.end(), h.states.back().begin() + static_cast<long>(off)));
  }
  // A segment cut short under the export (damage, or someone else's doing): its lost
  // bytes read as an error naming the file, and the process lives on.
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  const IndexEntry* victim = nullptr;
  uint32_t victim_seg = 0;
  const auto& segs = (*view)->history().segments();
  for (uint32_t s = 0; s < segs.size() && victim == nullptr; ++s) {
    if (!m->segments[s].sealed) continue;
    for (const IndexEntry& e : segs[s].entries) {
      // A record still shown in the newest state, in a sealed segment.
      bool shown = false;
      (*view)->map().for_each(
          e.offset, e.length, [&](uint64_t, uint64_t, const ViewSource& src, uint64_t) {
            shown = shown || (!src.zero && src.segment == s && &segs[s].entries[src.entry] == &e);
          });
      if (e.type == format::RecordType::kWrite && shown) {
        victim = &e;
        victim_seg = s;
        break;
      }
    }
  }
  REQUIRE(victim != nullptr);
  const std::string seg_path = segment_path(h.journal, m->segments[victim_seg].file);
  test::truncate_file(seg_path, victim->position);
  std::vector<uint8_t> all(kSize);
  Status st = (*view)->read(all, 0);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.message().find(seg_path) != std::string::npos);
}

namespace {

// A volume written in 8 KiB records at 8 KiB-aligned places (each record has chunk
// checksums, and what shows of it is whole chunks), then the first few rewritten.
struct Aligned {
  static constexpr uint64_t kRecord = 8192, kRecords = 128, kRewritten = 8;
  static constexpr uint64_t kVolume = kRecord * kRecords;
  test::TempDir dir;
  std::string image = dir / "disk.img";
  std::string journal = dir / "disk.rewind";
  std::vector<uint8_t> state = std::vector<uint8_t>(kVolume, 0);
  std::vector<uint8_t> before_rewrites;

  Aligned() {
    test::write_file(image, state);
    VolumeOptions o;
    o.image_path = image;
    o.journal_dir = journal;
    o.journal.segment_size = 256 * 1024;
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();
    auto put = [&](uint64_t i, uint64_t seed) {
      auto data = test::pattern(kRecord, seed);
      REQUIRE((*v)->write(data, i * kRecord, false).is_ok());
      std::copy(data.begin(), data.end(), state.begin() + static_cast<long>(i * kRecord));
    };
    for (uint64_t i = 0; i < kRecords; ++i) put(i, i + 1);
    before_rewrites = state;
    for (uint64_t i = 0; i < kRewritten; ++i) put(i, 1000 + i);
    REQUIRE((*v)->close().is_ok());
  }
};

// A view of `journal` at `target` that reads from the volume's image.
std::unique_ptr<JournalView> image_view(const std::string& journal, const Target& target,
                                        const Logger& logger = {}) {
  auto view = JournalView::open(journal, target, {});
  REQUIRE(view.is_ok());
  (*view)->use_image(logger);
  return std::move(*view);
}

uint64_t mapped_bytes(const JournalView& view) {
  uint64_t n = 0;
  for (const auto& [start, e] : view.map()) n += e.end - start;
  return n;
}

}  // namespace

TEST_CASE("a view reads from the image what no later record changed", "[view][image]") {
  Aligned a;
  // The newest state: the image holds all of it.
  auto newest = image_view(a.journal, Target::newest());
  CHECK(read_view(*newest) == a.state);
  JournalView::ImageReads r = newest->image_reads();
  CHECK(r.pieces == newest->map().size());
  CHECK(r.bytes == mapped_bytes(*newest));
  CHECK(r.mismatched == 0);
  // Before the rewrites: what they changed comes from the journal, the rest from the
  // image.
  const uint64_t before = newest->seq() - Aligned::kRewritten;
  auto old = image_view(a.journal, Target::at_seq(before));
  CHECK(read_view(*old) == a.before_rewrites);
  uint64_t unchanged = 0;
  const auto changed = changed_extents(old->history(), before, newest->seq());
  for (const auto& [start, e] : old->map()) {
    bool later = false;
    for (const ChangedExtent& c : changed)
      later = later || (c.offset < e.end && start < c.offset + c.length);
    if (!later) unchanged += e.end - start;
  }
  REQUIRE(unchanged > 0);
  CHECK(old->image_reads().bytes == unchanged);
  CHECK(old->image_reads().mismatched == 0);
  // A restore through such a view.
  auto view = image_view(a.journal, Target::newest());
  const std::string out = a.dir / "out.img";
  REQUIRE(restore_to_file(*view, out, {}).is_ok());
  CHECK(test::read_file(out) == a.state);
  CHECK(view->image_reads().bytes == mapped_bytes(*view));
}

TEST_CASE("a piece the image does not hold is read from the journal", "[view][image]") {
  Aligned a;
  // Two records' bytes changed in the image behind the volume's back.
  test::flip_bit(a.image, 20 * Aligned::kRecord + 100, 2);
  test::flip_bit(a.image, 40 * Aligned::kRecord + 5000, 6);
  auto view = image_view(a.journal, Target::newest());
  CHECK(read_view(*view) == a.state);
  CHECK(view->image_reads().mismatched == 2);
  CHECK(view->image_reads().pieces == view->map().size() - 2);
  CHECK_FALSE(view->image_reads().given_up);
}

TEST_CASE("an image that is not the volume's is given up", "[view][image]") {
  Aligned a;
  test::write_file(a.image, test::pattern(Aligned::kVolume, 77));
  std::vector<std::string> warnings;
  auto view = image_view(a.journal, Target::newest(), [&](LogLevel level, const std::string& m) {
    if (level == LogLevel::kWarning) warnings.push_back(m);
  });
  CHECK(read_view(*view) == a.state);
  CHECK(read_view(*view) == a.state);
  JournalView::ImageReads r = view->image_reads();
  CHECK(r.given_up);
  CHECK(r.pieces == 0);
  // It stopped trying before the end of the first read.
  CHECK(r.mismatched < view->map().size());
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find(fmt::format("the image {} does not hold what the journal says it should",
                                     a.image)) != std::string::npos);
}

TEST_CASE("without a usable image a view reads the journal alone", "[view][image]") {
  Aligned a;
  std::vector<std::string> notes;
  Logger logger = [&](LogLevel level, const std::string& m) {
    if (level == LogLevel::kInfo) notes.push_back(m);
  };
  SECTION("the image is gone") {
    std::filesystem::remove(a.image);
    auto view = image_view(a.journal, Target::newest(), logger);
    CHECK(read_view(*view) == a.state);
    CHECK(view->image_reads().bytes == 0);
    REQUIRE(notes.size() == 1);
    CHECK(notes[0].starts_with("reading everything from the journal: "));
    CHECK(notes[0].find(a.image) != std::string::npos);
  }
  SECTION("the image is a FIFO") {
    std::filesystem::remove(a.image);
    REQUIRE(::mkfifo(a.image.c_str(), 0600) == 0);
    auto view = image_view(a.journal, Target::newest(), logger);
    CHECK(read_view(*view) == a.state);
    REQUIRE(notes.size() == 1);
    CHECK(notes[0] == fmt::format("reading everything from the journal: {} is not a file or a "
                                  "block device",
                                  a.image));
  }
  SECTION("the image is smaller than the volume") {
    test::truncate_file(a.image, Aligned::kVolume - 4096);
    auto view = image_view(a.journal, Target::newest(), logger);
    CHECK(read_view(*view) == a.state);
    CHECK(view->image_reads().bytes == 0);
    REQUIRE(notes.size() == 1);
    CHECK(notes[0] == fmt::format("reading everything from the journal: the image {} is {} bytes, "
                                  "smaller than the volume ({} bytes)",
                                  a.image, Aligned::kVolume - 4096, Aligned::kVolume));
  }
}

TEST_CASE("only pieces that checksums cover whole are read from the image", "[view][image]") {
  test::TempDir dir;
  const std::string image = dir / "disk.img", journal = dir / "disk.rewind";
  std::vector<uint8_t> state(64 * 1024, 0);
  test::write_file(image, state);
  {
    VolumeOptions o;
    o.image_path = image;
    o.journal_dir = journal;
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();
    // A 16 KiB record, then 100 bytes in the middle of its second chunk: what shows of
    // the first record begins or ends inside a chunk, and only the small record is
    // covered whole by a checksum (its own).
    for (auto [off, len, seed] :
         {std::tuple<uint64_t, uint64_t, uint64_t>{0, 16384, 5}, {5000, 100, 6}}) {
      auto data = test::pattern(len, seed);
      REQUIRE((*v)->write(data, off, false).is_ok());
      std::copy(data.begin(), data.end(), state.begin() + static_cast<long>(off));
    }
    REQUIRE((*v)->close().is_ok());
  }
  auto view = image_view(journal, Target::newest());
  CHECK(read_view(*view) == state);
  CHECK(view->image_reads().pieces == 1);
  CHECK(view->image_reads().bytes == 100);
  CHECK(view->image_reads().mismatched == 0);
}

TEST_CASE("views with image reads equal the reference state across random histories",
          "[view][image][property]") {
  auto seed = GENERATE(range(1, 21));
  CAPTURE(seed);
  History h(static_cast<uint64_t>(seed), 120);
  std::mt19937_64 rng(seed * 104729);
  for (int t = 0; t < 6; ++t) {
    const uint64_t seq = t == 0 ? h.states.size() - 1 : rng() % h.states.size();
    CAPTURE(seq);
    auto view = image_view(h.journal, Target::at_seq(seq));
    CHECK(read_view(*view) == h.states[seq]);
    // The image holds the newest state, so whatever no later record changed matches.
    CHECK(view->image_reads().mismatched == 0);
    if (t == 0) CHECK(view->image_reads().bytes > 0);
  }
}
