// Coalescing (coalesce=on) against the reference model: through a real volume, every
// flush point, mark and the newest state restore exactly; every other point resolves
// to the last exact point at or before it, and that restores exactly too.
#include <catch2/catch.hpp>

#include <random>

#include <fmt/format.h>

#include "rewind/replay/inspect.h"
#include "rewind/replay/replay.h"
#include "rewind/replay/restore.h"
#include "rewind/replay/view.h"
#include "rewind/volume/volume.h"
#include "test_util.h"

using namespace rwd;

namespace {

constexpr uint64_t kSize = 64 * 1024;

std::vector<uint8_t> read_view(const std::shared_ptr<const JournalHistory>& h, uint64_t seq) {
  auto view = JournalView::open(h, seq);
  INFO(view.status().message());
  REQUIRE(view.is_ok());
  std::vector<uint8_t> got(kSize);
  REQUIRE((*view)->read(got, 0).is_ok());
  return got;
}

}  // namespace

TEST_CASE(
    "with coalescing every flush point and mark restores exactly and other points the "
    "last exact one before them",
    "[coalesce][property]") {
  const auto seed = static_cast<uint64_t>(GENERATE(range(1, 21)));
  CAPTURE(seed);
  test::TempDir dir;
  const std::string image = dir / "disk.img", journal = dir / "disk.rewind";
  std::vector<uint8_t> state = test::pattern(kSize, seed);
  test::write_file(image, state);
  VolumeOptions o;
  o.image_path = image;
  o.journal_dir = journal;
  o.coalesce = true;
  o.flush_interval = std::chrono::hours(1);  // records wait for a FLUSH, FUA or mark
  o.journal.segment_size = 16 * 1024;
  std::vector<std::vector<uint8_t>> states{state};
  uint64_t coalesced = 0;
  {
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();
    std::mt19937_64 rng(seed);
    int marks = 0;
    for (int i = 0; i < 200; ++i) {
      // Blocks of a small area, so that writes often cover earlier ones whole.
      const uint64_t off = (rng() % 12) * 4096 + (rng() % 2) * 512;
      const uint64_t len = std::min<uint64_t>((1 + rng() % 3) * 4096, kSize - off);
      const int r = static_cast<int>(rng() % 100);
      if (r < 60) {
        auto data = test::pattern(len, rng());
        REQUIRE((*v)->write(data, off, r < 8).is_ok());
        std::copy(data.begin(), data.end(), state.begin() + static_cast<long>(off));
      } else if (r < 75) {
        REQUIRE((r < 70 ? (*v)->zero(off, len, false) : (*v)->trim(off, len, false)).is_ok());
        std::fill_n(state.begin() + static_cast<long>(off), len, 0);
      } else if (r < 80) {
        REQUIRE((*v)->mark(fmt::format("m{}", marks++)).is_ok());
      } else if (r < 88) {
        REQUIRE((*v)->flush().is_ok());
        continue;
      } else {
        continue;
      }
      states.push_back(state);
    }
    coalesced = (*v)->queue().coalesced().records;
    REQUIRE((*v)->close().is_ok());
  }
  REQUIRE(coalesced > 0);  // or this test shows nothing
  CHECK(test::read_file(image) == states.back());

  auto loaded = JournalHistory::load(journal, true, {});
  REQUIRE(loaded.is_ok());
  auto h = std::make_shared<const JournalHistory>(std::move(*loaded));
  const uint64_t last = h->last_seq();
  REQUIRE(last == states.size() - 1);

  // Flush points, marks and the newest state are exact.
  uint64_t superseded = 0, flush_points = 0;
  h->for_each_entry(0, last, [&](const IndexEntry& e, uint32_t) {
    if (e.flags & format::kFlagSuperseded) ++superseded;
    if (!(e.flags & format::kFlagFlushPoint)) return;
    ++flush_points;
    CAPTURE(e.seq);
    CHECK(h->exact_at_or_before(e.seq) == e.seq);
    CHECK(read_view(h, e.seq) == states[e.seq]);
  });
  CHECK(superseded == coalesced);
  CHECK(flush_points > 0);
  CHECK(h->exact_at_or_before(last) == last);
  CHECK(read_view(h, last) == states[last]);
  // Every point resolves to an exact one at or before it.
  uint64_t snapped = 0;
  for (uint64_t s = 0; s <= last; ++s) {
    CAPTURE(s);
    std::string note;
    auto got = h->resolve(Target::at_seq(s), &note);
    REQUIRE(got.is_ok());
    CHECK(*got <= s);
    CHECK(*got == h->exact_at_or_before(s));
    CHECK(note.empty() == (*got == s));
    if (*got != s) {
      ++snapped;
      CHECK(note.find(fmt::format("restoring seq {}", *got)) != std::string::npos);
    }
    CHECK(read_view(h, *got) == states[*got]);
  }
  CHECK(snapped > 0);

  auto report = inspect_journal(journal, true);
  REQUIRE(report.is_ok());
  uint64_t counted = 0;
  for (const SegmentReport& s : report->segments) counted += s.coalesced;
  CHECK(counted == coalesced);
  VerifyReport verified;
  Status st = verify_journal(journal, image, &verified, {});
  INFO(st.message());
  CHECK(st.is_ok());
  REQUIRE(replay_newest(journal, dir / "replayed.img").is_ok());
  CHECK(test::read_file(dir / "replayed.img") == states.back());
}
