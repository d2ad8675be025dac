#include <catch2/catch.hpp>

#include <random>

#include <fmt/format.h>

#include "random_history.h"
#include "rewind/journal.h"
#include "rewind/restore.h"
#include "rewind/segment_index.h"
#include "rewind/view.h"
#include "rewind/volume.h"
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
    CHECK(again.message().find("exists; give --force") != std::string::npos);
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
