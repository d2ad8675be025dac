// Compaction against the reference model: every mark and every window end that was
// exact restores exactly as before, every point the compacted journal calls exact is,
// only the newest version of each byte of a window is kept, and a power cut at any I/O
// of a compaction leaves the old segments or their rewrites, whole.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>

#include <fmt/format.h>

#include "../support/fault_fs.h"
#include "random_history.h"
#include "rewind/history/compact.h"
#include "rewind/history/rebase.h"
#include "rewind/history/retention.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/replay.h"
#include "rewind/replay/restore.h"
#include "rewind/replay/view.h"
#include "rewind/volume/volume.h"
#include "test_util.h"

using namespace rwd;
using format::RecordType;
using test::check_intact;
using test::check_no_leftovers;
using test::check_reopens_intact;
using test::copy_volume;
using test::RandomHistory;

namespace {

constexpr uint64_t kTick = 1'000'000;  // records 1 ms apart

std::shared_ptr<const JournalHistory> load(const std::string& journal) {
  auto h = JournalHistory::load(journal, false, {});
  INFO(h.status().message());
  REQUIRE(h.is_ok());
  return std::make_shared<const JournalHistory>(std::move(*h));
}

std::vector<uint8_t> read_at(const std::shared_ptr<const JournalHistory>& h, uint64_t seq) {
  auto view = JournalView::open(h, seq);
  INFO(view.status().message());
  REQUIRE(view.is_ok());
  std::vector<uint8_t> got((*view)->size());
  Status st = (*view)->read(got, 0);
  INFO(st.message());
  REQUIRE(st.is_ok());
  return got;
}

std::map<uint64_t, IndexEntry> by_seq(const JournalHistory& h) {
  std::map<uint64_t, IndexEntry> out;
  for (const SegmentEntries& s : h.segments())
    for (const IndexEntry& e : s.entries) out[e.seq] = e;
  return out;
}

bool has_data(const IndexEntry& e) {
  return e.type != RecordType::kMark && !(e.flags & format::kFlagSuperseded);
}

// The seqs of the segments compacted to `g` (or coarser) in `after`, and where each
// run of them ends.
struct Compacted {
  std::set<uint64_t> seqs;
  std::set<uint64_t> run_ends;
};
Compacted compacted_seqs(const JournalHistory& after, uint64_t g) {
  Compacted c;
  const auto& segs = after.manifest().segments;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (segs[i].granularity_ns < g || segs[i].records == 0) continue;
    for (uint64_t s = segs[i].first_seq; s <= segs[i].last_seq; ++s) c.seqs.insert(s);
    if (i + 1 == segs.size() || segs[i + 1].granularity_ns < g) c.run_ends.insert(segs[i].last_seq);
  }
  return c;
}

// Checks a compaction at granularity g that turned `before` into `after` against the
// reference states of `h`.
void check_compaction(const RandomHistory& h, const std::shared_ptr<const JournalHistory>& before,
                      const std::shared_ptr<const JournalHistory>& after, uint64_t g,
                      const CompactionStats& stats) {
  const uint64_t last = h.states.size() - 1;
  REQUIRE(after->last_seq() == last);
  const auto old_entries = by_seq(*before), new_entries = by_seq(*after);
  const Compacted c = compacted_seqs(*after, g);
  REQUIRE_FALSE(c.seqs.empty());
  std::set<uint64_t> mark_seqs;
  for (const MarkInfo& mk : before->marks()) mark_seqs.insert(mk.seq);

  auto window = [&](uint64_t seq) {
    const uint64_t t = old_entries.at(seq).time_ns;
    return (t - 1) / g;
  };
  auto window_end = [&](uint64_t s) {
    return mark_seqs.count(s) || c.run_ends.count(s) || window(s) != window(s + 1);
  };
  // Promised points: marks and the window ends that were exact stay exact.
  for (uint64_t s : c.seqs) {
    if (!window_end(s) || before->exact_at_or_before(s) != s) continue;
    CAPTURE(s);
    CHECK(after->exact_at_or_before(s) == s);
  }
  for (uint64_t s : mark_seqs) {
    CAPTURE(s);
    CHECK(after->exact_at_or_before(s) == s);
  }
  // Every point the compacted journal calls exact is; the rest resolve to one that is.
  for (uint64_t s = after->first_seq(); s <= last; ++s) {
    CAPTURE(s);
    const uint64_t e = after->exact_at_or_before(s);
    CHECK(read_at(after, e) == h.states[e]);
    // Exact points after the compacted segments stay exact.
    if (before->exact_at_or_before(s) > *c.seqs.rbegin()) CHECK(e == before->exact_at_or_before(s));
  }
  // A restore at a window boundary (a time) selects the same state as before.
  const uint64_t t0 = old_entries.at(*c.seqs.begin()).time_ns;
  const uint64_t t1 = old_entries.at(*c.seqs.rbegin()).time_ns;
  for (uint64_t k = (t0 - 1) / g + 1; k * g < t1; ++k) {
    const Target t = Target::at_time(k * g, fmt::format("{} ns", k * g));
    std::string note_before, note_after;
    auto was = before->resolve(t, &note_before);
    auto now = after->resolve(t, &note_after);
    REQUIRE(was.is_ok());
    REQUIRE(now.is_ok());
    CAPTURE(k, *was, *now);
    if (*was == before->exact_at_or_before(*was) && note_before.empty()) {
      CHECK(*now == *was);
      CHECK(read_at(after, *now) == h.states[*was]);
    }
  }
  // Only the newest version of each byte of a window is stored.
  if (stats.windows_kept == 0) {
    std::vector<uint8_t> newest(RandomHistory::kSize);  // 0 untouched, 1 data, 2 zeroes
    uint64_t expect = 0, got = 0;
    for (uint64_t s : c.seqs) {
      const IndexEntry& e = old_entries.at(s);
      if (has_data(e))
        std::fill_n(newest.begin() + static_cast<long>(e.offset), e.length,
                    e.type == RecordType::kWrite ? 1 : 2);
      const IndexEntry& n = new_entries.at(s);
      if (has_data(n) && n.type == RecordType::kWrite) got += n.length;
      if (window_end(s)) {
        expect += static_cast<uint64_t>(std::count(newest.begin(), newest.end(), 1));
        std::fill(newest.begin(), newest.end(), 0);
      }
    }
    CHECK(got == expect + stats.zero_data);
    CHECK(stats.data_after == expect + stats.zero_data);
  }
  // Seqs and times stay; only the compacted segments changed.
  for (const auto& [s, e] : old_entries) {
    CAPTURE(s);
    REQUIRE(new_entries.count(s) == 1);
    CHECK(new_entries.at(s).time_ns == e.time_ns);
    if (!c.seqs.count(s)) CHECK(new_entries.at(s) == e);
  }
}

}  // namespace

TEST_CASE("compaction keeps every mark and window end exact and only the newest bytes of a window",
          "[compact][property]") {
  auto seed = GENERATE(range(1, 21));
  const bool coalesce = seed % 2 == 0;  // half of them over coalesced writes
  // Half of each over journals that store compressed records beside raw ones.
  const Compression compression =
      seed % 4 < 2 ? Compression{format::Codec::kZstd, 1} : Compression{};
  CAPTURE(seed, coalesce, compression_name(compression));
  RandomHistory h(static_cast<uint64_t>(seed), 200, 17, kTick, coalesce, compression);
  const uint64_t last = h.states.size() - 1;
  std::mt19937_64 rng(static_cast<uint64_t>(seed) * 7);
  const uint64_t g = kTick * (2 + rng() % 12);  // 2..13 records a window
  const uint64_t target = last / 3 + rng() % (last - last / 3);
  CAPTURE(g, target);
  auto before = load(h.journal);
  size_t coalesced = 0;
  for (const SegmentEntries& seg : before->segments())
    for (const IndexEntry& e : seg.entries) coalesced += (e.flags & format::kFlagSuperseded) != 0;
  CHECK((coalesced > 0) == coalesce);

  auto r = compact(h.journal, Target::at_seq(target), g, {});
  INFO(r.status().message());
  REQUIRE(r.is_ok());
  CHECK(r->stats.segments_rewritten > 0);
  CHECK(r->stats.windows_changed > 0);
  CHECK(r->stats.data_after < r->stats.data_before);
  CHECK(r->stats.windows_kept == 0);
  auto after = load(h.journal);
  // The segments compacted are the sealed ones that end at or before the target (the
  // last exact point at or before it, with coalescing).
  std::string note;
  auto want = before->resolve(Target::at_seq(target), &note);
  REQUIRE(want.is_ok());
  for (const ManifestSegment& seg : after->manifest().segments)
    CHECK((seg.granularity_ns == g) == (seg.sealed && seg.last_seq <= *want));
  check_compaction(h, before, after, g, r->stats);
  check_intact(h.journal, h.image);
  // Pieces merged from compressed records are stored compressed too.
  size_t compressed_pieces = 0;
  for (const SegmentEntries& seg : after->segments())
    for (const IndexEntry& e : seg.entries)
      compressed_pieces += (e.flags & format::kFlagCompacted) &&
                           !(e.flags & format::kFlagSuperseded) && e.codec != format::Codec::kNone;
  CHECK((compressed_pieces > 0) == (compression.codec != format::Codec::kNone));

  // Again at the same granularity: nothing to do, nothing changed.
  const auto manifest = test::read_file(h.journal + "/MANIFEST");
  auto again = compact(h.journal, Target::at_seq(target), g, {});
  REQUIRE(again.is_ok());
  CHECK(again->stats.segments == 0);
  CHECK(again->note.find("nothing to compact") != std::string::npos);
  CHECK(test::read_file(h.journal + "/MANIFEST") == manifest);

  // Coarser, over everything sealed: the promises of the compacted journal hold again.
  auto coarse = compact(h.journal, Target::newest(), g * 3, {});
  INFO(coarse.status().message());
  REQUIRE(coarse.is_ok());
  auto coarser = load(h.journal);
  check_compaction(h, after, coarser, g * 3, coarse->stats);
  check_no_leftovers(h.journal);

  // A rebase over compacted segments, then the volume serves on from its image.
  REQUIRE(rebase(h.journal, Target::at_seq(target), {}).is_ok());
  auto rebased = load(h.journal);
  for (uint64_t s = rebased->first_seq(); s <= last; ++s)
    CHECK(read_at(rebased, rebased->exact_at_or_before(s)) ==
          h.states[rebased->exact_at_or_before(s)]);
  VolumeOptions o;
  o.image_path = h.image;
  o.journal_dir = h.journal;
  auto v = Volume::open(o, {});
  REQUIRE(v.is_ok());
  REQUIRE((*v)->close().is_ok());
  REQUIRE(replay_newest(h.journal, h.dir / "replayed.img").is_ok());
  CHECK(test::read_file(h.dir / "replayed.img") == h.states[last]);
}

TEST_CASE(
    "compaction refuses a journal in use, bad granularities, and changes nothing with "
    "nothing to do",
    "[compact]") {
  RandomHistory h(5, 80, 0, kTick);
  test::check_refused_while_served(
      h, [&] { return compact(h.journal, Target::newest(), kTick, {}).status(); });
  const auto manifest = test::read_file(h.journal + "/MANIFEST");
  auto zero = compact(h.journal, Target::newest(), 0, {});
  REQUIRE_FALSE(zero.is_ok());
  CHECK(zero.status().message().find("granularity") != std::string::npos);
  // A point inside the first segment: nothing to compact.
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  REQUIRE(m->segments[0].records > 0);
  auto none = compact(h.journal, Target::at_seq(m->segments[0].last_seq - 1), kTick, {});
  REQUIRE(none.is_ok());
  CHECK(none->stats.segments == 0);
  CHECK(none->note.find("nothing to compact") != std::string::npos);
  auto past = compact(h.journal, Target::at_seq(100000), kTick, {});
  REQUIRE_FALSE(past.is_ok());
  CHECK(past.status().message().find("does not exist") != std::string::npos);
  CHECK(test::read_file(h.journal + "/MANIFEST") == manifest);
}

namespace {

// The segment files `journal`'s manifest lists that `before`'s did not: a compaction's
// rewrites.
std::set<std::string> new_segment_files(const JournalHistory& before, const std::string& journal) {
  std::set<std::string> old_files, out;
  for (const ManifestSegment& seg : before.manifest().segments) old_files.insert(seg.file);
  auto m = Manifest::load(journal);
  REQUIRE(m.is_ok());
  for (const ManifestSegment& seg : m->segments)
    if (!old_files.count(seg.file)) out.insert(seg.file);
  return out;
}

// After a power cut during a compaction whose rewrites are `rewrites`, and the loss of
// what was not synced: the manifest lists the old segments or every rewrite (which,
// into *switched_seen), every mark and every point the journal calls exact restores as
// the reference, the plugin starts on it (removing what the compaction left), and
// verify passes.
void check_after_cut(const RandomHistory& h, const JournalHistory& before, const VolumeOptions& o,
                     const std::set<std::string>& rewrites, std::set<bool>* switched_seen) {
  auto m = Manifest::load(o.journal_dir);
  INFO(m.status().message());
  REQUIRE(m.is_ok());
  size_t rewritten = 0;
  for (const ManifestSegment& seg : m->segments) rewritten += rewrites.count(seg.file);
  CHECK((rewritten == 0 || rewritten == rewrites.size()));
  switched_seen->insert(rewritten != 0);
  auto now = load(o.journal_dir);
  for (const MarkInfo& mk : before.marks()) CHECK(now->exact_at_or_before(mk.seq) == mk.seq);
  for (uint64_t s = 0; s < h.states.size(); s += 7) {
    CAPTURE(s);
    const uint64_t e = now->exact_at_or_before(s);
    CHECK(read_at(now, e) == h.states[e]);
  }
  check_reopens_intact(o);
}

}  // namespace

TEST_CASE("a power cut at any I/O of a compaction leaves the old segments or their rewrites",
          "[compact][crash][power]") {
  RandomHistory h(13, 150, 25, kTick);
  test::TempDir tmp(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp");
  const std::string root = tmp / "vol";
  VolumeOptions o;
  o.image_path = root + "/disk.img";
  o.journal_dir = root + "/disk.rewind";
  const uint64_t g = 6 * kTick;
  auto before = load(h.journal);

  uint64_t total = 0;
  {
    copy_volume(h, root);
    test::FaultInjectionFs fs(root);
    test::ScopedFileSystem use(&fs);
    auto r = compact(o.journal_dir, Target::newest(), g, {});
    REQUIRE(r.is_ok());
    REQUIRE(r->stats.segments_rewritten > 1);
    total = fs.changes();
  }
  const std::set<std::string> rewrites = new_segment_files(*before, o.journal_dir);
  REQUIRE(total > 5);

  std::set<bool> switched_seen;
  for (uint64_t n = 0; n <= total; ++n) {
    CAPTURE(n);
    copy_volume(h, root);
    test::FaultInjectionFs fs(root);
    test::ScopedFileSystem use(&fs);
    fs.cut_power_after(n);
    (void)compact(o.journal_dir, Target::newest(), g, {});
    fs.lose_unsynced(
        n % 2 ? test::FaultInjectionFs::Loss::kTear : test::FaultInjectionFs::Loss::kDrop, n);
    check_after_cut(h, *before, o, rewrites, &switched_seen);
  }
  CHECK(switched_seen == std::set<bool>{false, true});
}

TEST_CASE(
    "a power cut at any I/O of the plugin's retain-coarse compaction leaves the old "
    "segments or their rewrites",
    "[compact][retention][crash][power]") {
  RandomHistory h(14, 150, 25, kTick);
  test::TempDir tmp(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp");
  const std::string root = tmp / "vol";
  VolumeOptions o;
  o.image_path = root + "/disk.img";
  o.journal_dir = root + "/disk.rewind";
  o.flush_interval = std::chrono::milliseconds(1);  // the flusher commits the switch soon
  auto before = load(h.journal);
  RetentionPolicy policy;
  policy.coarse = {{std::chrono::hours(1), std::chrono::milliseconds(6)}};
  policy.interval = std::chrono::hours(1);  // only the explicit run below
  const uint64_t now = before->last_time_ns() + kTick;

  // A run without a cut counts the I/Os of the retention pass.
  uint64_t total = 0;
  {
    copy_volume(h, root);
    test::FaultInjectionFs fs(root);
    test::ScopedFileSystem use(&fs);
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();
    Retention retention(**v, o.journal_dir, policy, {});
    const uint64_t start = fs.changes();
    auto changed = retention.run_once(now);
    INFO(changed.status().message());
    REQUIRE(changed.is_ok());
    REQUIRE(*changed > 1);
    total = fs.changes() - start;
    retention.stop();
    REQUIRE((*v)->close().is_ok());
  }
  const std::set<std::string> rewrites = new_segment_files(*before, o.journal_dir);
  REQUIRE(total > 5);

  std::set<bool> switched_seen;
  for (uint64_t n = 0; n <= total; ++n) {
    CAPTURE(n);
    copy_volume(h, root);
    test::FaultInjectionFs fs(root);
    test::ScopedFileSystem use(&fs);
    {
      auto v = Volume::open(o, {});
      REQUIRE(v.is_ok());
      (*v)->start();
      Retention retention(**v, o.journal_dir, policy, {});
      fs.cut_power_after(n);
      (void)retention.run_once(now);
      retention.stop();
    }  // the volume is gone with the power
    fs.lose_unsynced(
        n % 2 ? test::FaultInjectionFs::Loss::kTear : test::FaultInjectionFs::Loss::kDrop, n);
    check_after_cut(h, *before, o, rewrites, &switched_seen);
  }
  CHECK(switched_seen == std::set<bool>{false, true});
}

TEST_CASE("retain-coarse tiers parse, and refuse what cannot be meant", "[compact][retention]") {
  using std::chrono::hours, std::chrono::minutes;
  auto ok = parse_retention_tiers("1d:1m,30d:1h");
  REQUIRE(ok.is_ok());
  CHECK(*ok == std::vector<RetentionTier>{{hours(24), minutes(1)}, {hours(24 * 30), hours(1)}});
  for (const char* bad : {"", "1d", "1d:", ":1m", "1d:1d", "1d:2d", "1d:1m,1d:1h", "1d:1h,30d:1m",
                          "1d:1m,,30d:1h", "1x:1m", "1d:0s"}) {
    CAPTURE(bad);
    auto r = parse_retention_tiers(bad);
    CHECK_FALSE(r.is_ok());
  }
}

TEST_CASE("a served volume thins its history by retain-coarse tiers while writes go on",
          "[compact][retention]") {
  RandomHistory h(21, 300, 23, kTick);
  const uint64_t last = h.states.size() - 1;
  auto before = load(h.journal);
  VolumeOptions o;
  o.image_path = h.image;
  o.journal_dir = h.journal;
  o.flush_interval = std::chrono::milliseconds(1);
  auto v = Volume::open(o, {});
  REQUIRE(v.is_ok());
  (*v)->start();
  const auto m = (*v)->snapshot();
  REQUIRE(m->segments.size() > 4);
  RetentionPolicy policy;
  policy.retain = std::chrono::milliseconds(40);
  policy.coarse = {{std::chrono::milliseconds(150), std::chrono::milliseconds(4)},
                   {std::chrono::hours(1), std::chrono::milliseconds(12)}};
  policy.interval = std::chrono::hours(1);  // only the explicit runs below
  Retention retention(**v, h.journal, policy, {});
  const uint64_t now = before->last_time_ns() + 10 * kTick;
  // One tier a run: the coarse one, then the fine one, then nothing is due.
  auto first = retention.run_once(now);
  INFO(first.status().message());
  REQUIRE(first.is_ok());
  CHECK(*first > 0);
  auto second = retention.run_once(now);
  REQUIRE(second.is_ok());
  CHECK(*second > 0);
  auto third = retention.run_once(now);
  REQUIRE(third.is_ok());
  CHECK(*third == 0);
  // Writes go on meanwhile and after.
  auto more = test::pattern(4096, 5);
  REQUIRE((*v)->write(more, 0, true).is_ok());
  retention.stop();
  REQUIRE((*v)->close().is_ok());

  auto after = load(h.journal);
  CHECK(after->first_seq() == 0);  // nothing is an hour old: nothing folded
  size_t coarse = 0, fine = 0;
  for (const ManifestSegment& seg : after->manifest().segments) {
    CAPTURE(seg.file, seg.granularity_ns);
    if (!seg.sealed || seg.last_seq > last) continue;
    const uint64_t age = now - seg.last_time_ns;
    const uint64_t expect = age >= 150 * kTick ? 12 * kTick : age >= 40 * kTick ? 4 * kTick : 0;
    CHECK(seg.granularity_ns == expect);
    coarse += expect == 12 * kTick, fine += expect == 4 * kTick;
  }
  CHECK(coarse > 0);
  CHECK(fine > 0);
  for (const MarkInfo& mk : before->marks()) {
    CAPTURE(mk.name);
    CHECK(after->exact_at_or_before(mk.seq) == mk.seq);
    CHECK(read_at(after, mk.seq) == h.states[mk.seq]);
  }
  for (uint64_t s = 0; s <= last; ++s) {
    CAPTURE(s);
    const uint64_t e = after->exact_at_or_before(s);
    CHECK(read_at(after, e) == h.states[e]);
  }
  check_intact(h.journal, h.image);
}
