#include <catch2/catch.hpp>

#include <random>

#include "rewind/base/extent_map.h"

using namespace rwd;

namespace {
// A value that remembers which write it came from and the byte offset within it.
struct Src {
  int id;
  uint64_t pos;
  Src advanced(uint64_t n) const { return {id, pos + n}; }
};
}  // namespace

TEST_CASE("extent map agrees with a byte array under random overlapping inserts", "[extent_map]") {
  auto seed = GENERATE(range(1, 41));
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const uint64_t size = 4096;
  // Reference: for each byte, (write id, position within that write); -1 = never written.
  std::vector<std::pair<int, uint64_t>> ref(size, {-1, 0});
  ExtentMap<Src> map;
  for (int id = 0; id < 200; ++id) {
    uint64_t off = rng() % size;
    uint64_t len = 1 + rng() % std::min<uint64_t>(size - off, id % 10 == 0 ? size : 300);
    map.insert(off, len, Src{id, 0});
    for (uint64_t i = 0; i < len; ++i) ref[off + i] = {id, i};
  }
  std::vector<std::pair<int, uint64_t>> got(size, {-1, 0});
  uint64_t prev_end = 0;
  map.for_each(0, size, [&](uint64_t s, uint64_t e, const Src& v, uint64_t adv) {
    REQUIRE(s >= prev_end);  // in order, no overlap
    prev_end = e;
    for (uint64_t b = s; b < e; ++b) got[b] = {v.id, v.pos + adv + (b - s)};
  });
  CHECK(got == ref);
}

TEST_CASE("extent map at a random target agrees with the reference over 2000 histories",
          "[extent_map][property]") {
  // Each history is a run of WRITE (id >= 0), ZERO and TRIM (id -2: reads as zeroes)
  // records; the map built from the first `target` of them must give, for every byte,
  // the newest record at or before the target that covers it.
  auto seed = GENERATE(range(1000, 3000));
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  const uint64_t size = 1 + rng() % 2048;
  const int ops = 1 + static_cast<int>(rng() % 120);
  const int target = static_cast<int>(rng() % (ops + 1));
  CAPTURE(seed, size, ops, target);
  std::vector<std::pair<int, uint64_t>> ref(size, {-1, 0});  // -1: the base snapshot
  ExtentMap<Src> map;
  for (int id = 0; id < target; ++id) {
    uint64_t off = rng() % size;
    uint64_t len = 1 + rng() % (size - off);
    bool zero = rng() % 4 == 0;
    map.insert(off, len, Src{zero ? -2 : id, 0});
    for (uint64_t i = 0; i < len; ++i) ref[off + i] = {zero ? -2 : id, zero ? 0 : i};
  }
  std::vector<std::pair<int, uint64_t>> got(size, {-1, 0});
  map.for_each(0, size, [&](uint64_t s, uint64_t e, const Src& v, uint64_t adv) {
    for (uint64_t b = s; b < e; ++b) got[b] = {v.id, v.id == -2 ? 0 : v.pos + adv + (b - s)};
  });
  REQUIRE(got == ref);
}

TEST_CASE("extent map lookups clip to the asked range", "[extent_map]") {
  ExtentMap<Src> map;
  map.insert(100, 100, Src{1, 0});
  std::vector<std::tuple<uint64_t, uint64_t, uint64_t>> seen;
  map.for_each(150, 20, [&](uint64_t s, uint64_t e, const Src& v, uint64_t adv) {
    seen.emplace_back(s, e, v.pos + adv);
  });
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == std::make_tuple(uint64_t{150}, uint64_t{170}, uint64_t{50}));
}

TEST_CASE("extent map erase_if removes whole matching extents in a range", "[extent_map]") {
  ExtentMap<Src> map;
  map.insert(0, 100, Src{1, 0});
  map.insert(100, 100, Src{2, 0});
  map.insert(300, 100, Src{1, 0});
  map.erase_if(50, 100, [](const Src& s) { return s.id == 1; });
  REQUIRE(map.size() == 2);
  CHECK(map.begin()->first == 100);
  CHECK(std::next(map.begin())->first == 300);
}

TEST_CASE("a flat extent map built newest-wins equals the extent map of the same writes",
          "[extent_map]") {
  auto seed = GENERATE(range(1, 201));
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const uint64_t size = 1 + rng() % 8192;
  std::vector<Interval<Src>> history;
  ExtentMap<Src> map;
  const int writes = static_cast<int>(rng() % 300);
  // Odd seeds write whole 512-byte blocks, so that many writes start at one offset
  // (rewrites), some covering others whole and some not.
  const bool blocks = seed % 2 == 1;
  for (int id = 0; id < writes; ++id) {
    uint64_t off = rng() % size;
    uint64_t len = rng() % std::min<uint64_t>(size - off + 1, id % 7 == 0 ? size : 200);
    if (blocks) {
      off = off / 512 * 512;
      len = std::min<uint64_t>((1 + rng() % 3) * 512, size - off);
    }
    history.push_back({off, len, Src{id, 0}});
    map.insert(off, len, Src{id, 0});
  }
  auto flat = FlatExtentMap<Src>::newest_wins(history);
  // Same extents, in the same order: the flat map merges exactly what ExtentMap keeps
  // as one extent (the uncut remainder of one write).
  std::vector<std::tuple<uint64_t, uint64_t, int, uint64_t>> want, got;
  for (const auto& [s, e] : map) want.emplace_back(s, e.end, e.value.id, e.value.pos);
  for (const auto& [s, e] : flat) got.emplace_back(s, e.end, e.value.id, e.value.pos);
  CHECK(got == want);
  // And lookups clip alike.
  const uint64_t a = rng() % size, n = 1 + rng() % size;
  std::vector<std::tuple<uint64_t, uint64_t, int, uint64_t>> wl, gl;
  map.for_each(a, n, [&](uint64_t s, uint64_t e, const Src& v, uint64_t adv) {
    wl.emplace_back(s, e, v.id, v.pos + adv);
  });
  flat.for_each(a, n, [&](uint64_t s, uint64_t e, const Src& v, uint64_t adv) {
    gl.emplace_back(s, e, v.id, v.pos + adv);
  });
  CHECK(gl == wl);
}
