// Rebase against the reference model: every point the journal still promises restores
// exactly as before, the points folded away are refused naming the restorable range,
// and a power cut at any I/O of a rebase leaves a volume that keeps those promises.
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "../support/fault_fs.h"
#include "random_history.h"
#include "rewind/format/segment_index.h"
#include "rewind/history/rebase.h"
#include "rewind/history/retention.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/replay.h"
#include "rewind/replay/restore.h"
#include "rewind/replay/view.h"
#include "rewind/volume/volume.h"
#include "test_util.h"

using namespace rwd;
using test::check_intact;
using test::check_no_leftovers;
using test::check_reopens_intact;
using test::copy_volume;
using test::RandomHistory;
using test::state_at;

namespace {

// The points a journal promises (base to newest) read as the reference, the ones
// before are refused naming the range, and the volume serves on from its image.
void check_promises(const RandomHistory& h, uint64_t seed) {
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  const uint64_t base = m->base_seq, last = h.states.size() - 1;
  std::mt19937_64 rng(seed);
  std::set<uint64_t> seqs{base, last, (base + last) / 2};
  for (int i = 0; i < 6; ++i) seqs.insert(base + rng() % (last - base + 1));
  for (uint64_t s : seqs) {
    CAPTURE(s);
    CHECK(state_at(h.journal, s) == h.states[s]);
  }
  if (base > 0) {
    auto before = JournalView::open(h.journal, Target::at_seq(base - 1), {});
    REQUIRE_FALSE(before.is_ok());
    CHECK(before.status().message().find("before the oldest restorable point") !=
          std::string::npos);
    CHECK(before.status().message().find(fmt::format("seq {} (", base)) != std::string::npos);
  }
  check_intact(h.journal, h.image);
}

// After a power cut during a rebase to `new_base` and the loss of what was not synced:
// the manifest names the old base (seq 0) or the new one, every point it promises
// restores as the reference, the plugin starts on it (removing what the rebase left
// over), and verify passes. Adds the base found to *bases_seen.
void check_after_cut(const RandomHistory& h, const VolumeOptions& o, uint64_t new_base,
                     std::set<uint64_t>* bases_seen) {
  const uint64_t last = h.states.size() - 1;
  auto m = Manifest::load(o.journal_dir);
  INFO(m.status().message());
  REQUIRE(m.is_ok());
  CHECK((m->base_seq == 0 || m->base_seq == new_base));
  bases_seen->insert(m->base_seq);
  for (uint64_t s : {m->base_seq, (m->base_seq + last) / 2, last}) {
    CAPTURE(s);
    CHECK(state_at(o.journal_dir, s) == h.states[s]);
  }
  check_reopens_intact(o);
}

}  // namespace

TEST_CASE("rebase folds whole segments into a new base and every later point restores as before",
          "[rebase][property]") {
  auto seed = GENERATE(range(1, 21));
  // Half of them over journals that store compressed records beside raw ones.
  const Compression compression = seed % 2 ? Compression{format::Codec::kZstd, 1} : Compression{};
  CAPTURE(seed, compression_name(compression));
  RandomHistory h(static_cast<uint64_t>(seed), 150, 20, 0, false, compression);
  const uint64_t last = h.states.size() - 1;
  auto before = Manifest::load(h.journal);
  REQUIRE(before.is_ok());
  std::mt19937_64 rng(static_cast<uint64_t>(seed) * 31);
  const uint64_t target = 1 + rng() % last;
  CAPTURE(target);

  auto r = rebase(h.journal, Target::at_seq(target), {});
  INFO(r.status().message());
  REQUIRE(r.is_ok());
  // The new base is the end of the last sealed segment at or before the target.
  uint64_t expect_base = 0, folded = 0;
  for (const ManifestSegment& seg : before->segments)
    if (seg.sealed && seg.last_seq <= target) expect_base = seg.last_seq, ++folded;
  CHECK(r->old_base_seq == 0);
  CHECK(r->new_base_seq == expect_base);
  CHECK(r->segments_removed == folded);
  for (const auto& [name, seq] : h.marks) {
    CAPTURE(name);
    bool given =
        std::find(r->marks_given.begin(), r->marks_given.end(), name) != r->marks_given.end();
    CHECK(given == (seq < r->new_base_seq));
    if (seq >= r->new_base_seq) {
      auto view = JournalView::open(h.journal, Target::at_mark(name), {});
      REQUIRE(view.is_ok());
      CHECK((*view)->seq() == seq);
    }
  }
  auto after = Manifest::load(h.journal);
  REQUIRE(after.is_ok());
  CHECK(after->base_seq == expect_base);
  CHECK(after->segments.size() == before->segments.size() - folded);
  check_promises(h, static_cast<uint64_t>(seed));
  check_no_leftovers(h.journal);

  // A second rebase to the newest point folds every sealed segment.
  auto again = rebase(h.journal, Target::newest(), {});
  REQUIRE(again.is_ok());
  CHECK(again->new_base_seq == last);
  check_promises(h, static_cast<uint64_t>(seed) + 1);
  check_no_leftovers(h.journal);

  // The volume serves on from the rebased journal and its seqs continue.
  VolumeOptions o;
  o.image_path = h.image;
  o.journal_dir = h.journal;
  auto v = Volume::open(o, {});
  REQUIRE(v.is_ok());
  (*v)->start();
  auto more = test::pattern(4096, 77);
  REQUIRE((*v)->write(more, 0, true).is_ok());
  CHECK((*v)->queue().last_seq() == last + 1);
  REQUIRE((*v)->close().is_ok());
  REQUIRE(replay_newest(h.journal, h.dir / "replayed.img").is_ok());
  CHECK(test::read_file(h.dir / "replayed.img") == test::read_file(h.image));
}

TEST_CASE("rebase refuses a journal in use and changes nothing when no segment is old enough",
          "[rebase]") {
  RandomHistory h(3, 60);
  test::check_refused_while_served(
      h, [&] { return rebase(h.journal, Target::newest(), {}).status(); });
  const auto manifest = test::read_file(h.journal + "/MANIFEST");
  // seq 1 lies inside the first segment: nothing to fold.
  auto none = rebase(h.journal, Target::at_seq(1), {});
  REQUIRE(none.is_ok());
  CHECK(none->new_base_seq == 0);
  CHECK(none->note.find("nothing to fold") != std::string::npos);
  CHECK(test::read_file(h.journal + "/MANIFEST") == manifest);
  // A time before the base: nothing to fold either.
  auto old = rebase(h.journal, Target::at_time(1, "1970-01-01T00:00:00Z"), {});
  REQUIRE(old.is_ok());
  CHECK(old->new_base_seq == 0);
  // A seq past the end is an error naming the range.
  auto past = rebase(h.journal, Target::at_seq(100000), {});
  REQUIRE_FALSE(past.is_ok());
  CHECK(past.status().message().find("does not exist") != std::string::npos);
}

TEST_CASE("rebase keeps the records an unclean stop left for start-up to redo", "[rebase]") {
  RandomHistory h(4, 120);
  const uint64_t last = h.states.size() - 1;
  // As after a crash: the image is current only to an early seq, and holds the base.
  auto m = Manifest::load(h.journal);
  REQUIRE(m.is_ok());
  REQUIRE(m->segments.size() > 3);
  const uint64_t checkpoint = m->segments[1].last_seq + 1;
  m->checkpoint_seq = checkpoint;
  REQUIRE(m->store(h.journal).is_ok());
  test::write_file(h.image, h.states[0]);

  auto r = rebase(h.journal, Target::newest(), {});
  REQUIRE(r.is_ok());
  CHECK(r->new_base_seq == m->segments[1].last_seq);  // not past the checkpoint
  CHECK(r->note.find(fmt::format("current to seq {} only", checkpoint)) != std::string::npos);
  // Start-up redoes the rest onto the image, from records the rebase kept.
  VolumeOptions o;
  o.image_path = h.image;
  o.journal_dir = h.journal;
  auto v = Volume::open(o, {});
  INFO(v.status().message());
  REQUIRE(v.is_ok());
  REQUIRE((*v)->close().is_ok());
  CHECK(test::read_file(h.image) == h.states[last]);
}

TEST_CASE("a power cut at any I/O of a rebase leaves the old volume or the new one, whole",
          "[rebase][crash][power]") {
  RandomHistory h(11, 150, 25);
  const uint64_t last = h.states.size() - 1;
  test::TempDir tmp(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp");
  const std::string root = tmp / "vol";
  const auto fresh = [&] { copy_volume(h, root); };
  const uint64_t target = last * 2 / 3;

  uint64_t total = 0, new_base = 0;
  {
    fresh();
    test::FaultInjectionFs fs(root);
    test::ScopedFileSystem use(&fs);
    auto r = rebase(root + "/disk.rewind", Target::at_seq(target), {});
    REQUIRE(r.is_ok());
    REQUIRE(r->new_base_seq > 0);
    new_base = r->new_base_seq;
    total = fs.changes();
  }
  REQUIRE(total > 5);

  std::set<uint64_t> bases_seen;
  for (uint64_t n = 0; n <= total; ++n) {
    CAPTURE(n);
    fresh();
    test::FaultInjectionFs fs(root);
    test::ScopedFileSystem use(&fs);
    fs.cut_power_after(n);
    (void)rebase(root + "/disk.rewind", Target::at_seq(target), {});
    fs.lose_unsynced(
        n % 2 ? test::FaultInjectionFs::Loss::kTear : test::FaultInjectionFs::Loss::kDrop, n);

    VolumeOptions o;
    o.image_path = root + "/disk.img";
    o.journal_dir = root + "/disk.rewind";
    check_after_cut(h, o, new_base, &bases_seen);
  }
  // Cuts fell both before and after the switch.
  CHECK(bases_seen == std::set<uint64_t>{0, new_base});
}

TEST_CASE("a served volume folds its oldest segments to keep within journal-max while writes go on",
          "[rebase][retention]") {
  test::TempDir dir;
  const std::string image = dir / "disk.img", journal = dir / "disk.rewind";
  constexpr uint64_t kSize = RandomHistory::kSize;
  std::vector<uint8_t> state = test::pattern(kSize, 5);
  test::write_file(image, state);
  VolumeOptions o;
  o.image_path = image;
  o.journal_dir = journal;
  o.flush_interval = std::chrono::milliseconds(1);
  o.checkpoint_interval = std::chrono::nanoseconds(0);  // the checkpoint keeps up
  o.journal.segment_size = 16 * 1024;
  std::vector<std::vector<uint8_t>> states{state};
  std::string log;
  std::mutex log_mu;
  auto logger = [&](LogLevel, const std::string& m) {
    std::lock_guard lk(log_mu);
    log += m + "\n";
  };
  RetentionPolicy policy;
  policy.journal_max = 64 * 1024;
  policy.interval = std::chrono::milliseconds(2);
  uint64_t total = 0;
  {
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();
    Retention retention(**v, journal, policy, logger);
    std::mt19937_64 rng(5);
    for (int i = 0; i < 400; ++i) {
      const uint64_t off = rng() % (kSize - 4096), len = 1 + rng() % 4096;
      auto data = test::pattern(len, rng());
      REQUIRE((*v)->write(data, off, i % 10 == 0).is_ok());
      std::copy(data.begin(), data.end(), state.begin() + static_cast<long>(off));
      states.push_back(state);
    }
    REQUIRE((*v)->flush().is_ok());
    // The last rounds of the policy catch up with the last writes.
    for (int i = 0; i < 2000; ++i) {
      total = 0;
      const auto m = (*v)->snapshot();  // held: the loop below reads it
      for (const ManifestSegment& seg : m->segments) total += seg.bytes;
      if (total <= policy.journal_max) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    retention.stop();
    REQUIRE((*v)->close().is_ok());
  }
  INFO(log);
  CHECK(total <= policy.journal_max);
  CHECK(log.find("over journal-max=64.0 KiB: giving up the history of seq 1..") !=
        std::string::npos);
  auto m = Manifest::load(journal);
  REQUIRE(m.is_ok());
  CHECK(m->base_seq > 0);
  // Every point the journal still promises restores as the reference.
  const uint64_t last = states.size() - 1;
  for (uint64_t s = m->base_seq; s <= last; s += 7) {
    CAPTURE(s);
    CHECK(state_at(journal, s) == states[s]);
  }
  CHECK(state_at(journal, last) == states[last]);
  CHECK(test::read_file(image) == states[last]);
  check_intact(journal, image);
}

TEST_CASE("inspecting a served volume while its retention folds segments never fails",
          "[rebase][retention]") {
  test::TempDir dir;
  const std::string image = dir / "disk.img", journal = dir / "disk.rewind";
  constexpr uint64_t kSize = RandomHistory::kSize;
  test::write_file(image, test::pattern(kSize, 6));
  VolumeOptions o;
  o.image_path = image;
  o.journal_dir = journal;
  o.flush_interval = std::chrono::milliseconds(1);
  o.checkpoint_interval = std::chrono::nanoseconds(0);
  o.journal.segment_size = 16 * 1024;
  RetentionPolicy policy;
  policy.journal_max = 64 * 1024;
  policy.interval = std::chrono::milliseconds(1);
  auto v = Volume::open(o, {});
  REQUIRE(v.is_ok());
  (*v)->start();
  Retention retention(**v, journal, policy, {});
  // `rewind info` and `rewind log` of the running volume, and the history a view
  // loads, as fast as they go, while
  // the base snapshot and the oldest segments are replaced under them.
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::string failure;
  std::set<uint64_t> bases;
  std::thread reader([&] {
    while (!done) {
      auto r = inspect_journal(journal, reads % 2 == 1);
      if (!r && failure.empty()) failure = r.status().message();
      if (r) bases.insert(r->manifest.base_seq);
      // What views, restores and diffs of it load first.
      auto h = JournalHistory::load(journal, false, {});
      if (!h && failure.empty()) failure = h.status().message();
      ++reads;
    }
  });
  std::mt19937_64 rng(6);
  for (int i = 0; i < 3000; ++i) {
    const uint64_t off = rng() % (kSize - 4096), len = 1 + rng() % 4096;
    REQUIRE((*v)->write(test::pattern(len, rng()), off, i % 10 == 0).is_ok());
  }
  done = true;
  reader.join();
  retention.stop();
  REQUIRE((*v)->close().is_ok());
  INFO(failure);
  CHECK(failure.empty());
  CHECK(reads > 10);
  CHECK(bases.size() > 10);  // it read across many rebases
  auto m = Manifest::load(journal);
  REQUIRE(m.is_ok());
  CHECK(m->base_seq > 0);  // the base was replaced while it was read
}

TEST_CASE("retain folds the segments whose every write is older than the time kept",
          "[rebase][retention]") {
  RandomHistory h(6, 150);
  const uint64_t last = h.states.size() - 1;
  VolumeOptions o;
  o.image_path = h.image;
  o.journal_dir = h.journal;
  auto v = Volume::open(o, {});
  REQUIRE(v.is_ok());
  (*v)->start();
  const auto before = (*v)->snapshot();
  REQUIRE(before->segments.size() > 2);
  RetentionPolicy policy;
  policy.retain = std::chrono::hours(1);
  policy.interval = std::chrono::hours(1);  // only the explicit runs below
  Retention retention(**v, h.journal, policy, {});
  // Nothing is an hour old yet.
  auto now = retention.run_once(wall_clock_ns());
  REQUIRE(now.is_ok());
  CHECK(*now == 0);
  // An hour and a bit after the middle segment's last write, it and those before go.
  const ManifestSegment& mid = before->segments[before->segments.size() / 2];
  auto later = retention.run_once(mid.last_time_ns + 3600ull * 1000000000 + 1);
  INFO(later.status().message());
  REQUIRE(later.is_ok());
  CHECK(*later == before->segments.size() / 2 + 1);
  CHECK((*v)->snapshot()->base_seq == mid.last_seq);
  retention.stop();
  REQUIRE((*v)->close().is_ok());
  CHECK(state_at(h.journal, mid.last_seq) == h.states[mid.last_seq]);
  CHECK(state_at(h.journal, last) == h.states[last]);
  check_no_leftovers(h.journal);
}

TEST_CASE("a power cut at any I/O of the plugin's retention leaves the old volume or the new one",
          "[rebase][retention][crash][power]") {
  RandomHistory h(12, 150, 30);
  test::TempDir tmp(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp");
  const std::string root = tmp / "vol";
  const auto fresh = [&] { copy_volume(h, root); };
  VolumeOptions o;
  o.image_path = root + "/disk.img";
  o.journal_dir = root + "/disk.rewind";
  o.flush_interval = std::chrono::milliseconds(1);  // the flusher commits the rebase soon
  RetentionPolicy policy;
  policy.retain = std::chrono::seconds(1);
  policy.interval = std::chrono::hours(1);  // only the explicit run below
  const uint64_t later = wall_clock_ns() + 3600ull * 1000000000;

  // A run without a cut counts the I/Os of the retention pass.
  uint64_t total = 0, new_base = 0;
  {
    fresh();
    test::FaultInjectionFs fs(root);
    test::ScopedFileSystem use(&fs);
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();
    Retention retention(**v, o.journal_dir, policy, {});
    const uint64_t before = fs.changes();
    auto folded = retention.run_once(later);
    REQUIRE(folded.is_ok());
    REQUIRE(*folded > 0);
    total = fs.changes() - before;
    new_base = (*v)->snapshot()->base_seq;
    retention.stop();
    REQUIRE((*v)->close().is_ok());
  }
  REQUIRE(total > 5);

  std::set<uint64_t> bases_seen;
  for (uint64_t n = 0; n <= total; ++n) {
    CAPTURE(n);
    fresh();
    test::FaultInjectionFs fs(root);
    test::ScopedFileSystem use(&fs);
    {
      auto v = Volume::open(o, {});
      REQUIRE(v.is_ok());
      (*v)->start();
      Retention retention(**v, o.journal_dir, policy, {});
      fs.cut_power_after(n);
      (void)retention.run_once(later);
      retention.stop();
    }  // the volume is gone with the power
    fs.lose_unsynced(
        n % 2 ? test::FaultInjectionFs::Loss::kTear : test::FaultInjectionFs::Loss::kDrop, n);
    check_after_cut(h, o, new_base, &bases_seen);
  }
  CHECK(bases_seen == std::set<uint64_t>{0, new_base});
}

TEST_CASE("journal-max over coalesced writes with no flush behind them says why it cannot fold",
          "[rebase][retention]") {
  test::TempDir dir;
  const std::string image = dir / "disk.img";
  test::write_file(image, std::vector<uint8_t>(8 << 20, 0));
  VolumeOptions o;
  o.image_path = image;
  o.journal_dir = dir / "disk.rewind";
  o.queue_max = 4 << 20;  // batches of 1 MiB
  o.flush_interval = std::chrono::hours(1);
  o.coalesce = true;
  o.journal.segment_size = 64 << 10;
  o.seal_checkpoint_spacing = std::chrono::nanoseconds(0);  // a checkpoint after every seal
  auto v = Volume::open(o, {});
  REQUIRE(v.is_ok());
  (*v)->start();
  // A write covered whole by the next one before either is journaled: coalesced, and
  // no FLUSH ever comes after it, so no state after it is exact.
  auto block = [](uint64_t n) { return test::pattern(4096, n); };
  REQUIRE((*v)->write(block(1), 0, false).is_ok());
  REQUIRE((*v)->write(block(2), 0, false).is_ok());
  for (uint64_t i = 1; i < 600; ++i) REQUIRE((*v)->write(block(i + 2), i * 4096, false).is_ok());
  // Sealed segments the image's checkpoint covers: what retention could fold.
  auto foldable = [&] {
    const auto m = (*v)->snapshot();
    return segments_ending_by(*m, m->checkpoint_seq);
  };
  for (int i = 0; i < 500 && foldable() < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(foldable() >= 3);
  RetentionPolicy policy;
  policy.journal_max = 64 << 10;
  policy.interval = std::chrono::hours(1);  // only the explicit runs below
  std::mutex log_mu;
  std::string log;
  Retention retention(**v, o.journal_dir, policy, [&](LogLevel level, const std::string& m) {
    std::lock_guard lk(log_mu);
    if (level >= LogLevel::kWarning) log += m + "\n";
  });
  auto none = retention.run_once(wall_clock_ns());
  REQUIRE(none.is_ok());
  CHECK(*none == 0);
  {
    std::lock_guard lk(log_mu);
    CHECK(log.find("over journal-max=64.0 KiB, but no sealed segment ends at an exact state") !=
          std::string::npos);
  }
  CHECK((*v)->snapshot()->base_seq == 0);
  // Once the client flushes, and more segments are sealed, it folds.
  REQUIRE((*v)->flush().is_ok());
  for (uint64_t i = 0; i < 300; ++i)
    REQUIRE((*v)->write(block(i + 1000), (1000 + i) * 4096, true).is_ok());
  // (The image's checkpoint follows the sealed segments a moment later.)
  size_t folded = 0;
  for (int i = 0; i < 500 && folded == 0; ++i) {
    auto r = retention.run_once(wall_clock_ns());
    INFO(r.status().message());
    REQUIRE(r.is_ok());
    folded = *r;
    if (folded == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(folded > 0);
  CHECK((*v)->snapshot()->base_seq > 0);
  retention.stop();
  REQUIRE((*v)->close().is_ok());
}
