// A random history written through a real volume, with the reference state (a byte
// array) after every record: the model the property tests of views, restores and
// rebases compare with.
#pragma once

#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "rewind/volume.h"
#include "test_util.h"

namespace rwd::test {

struct RandomHistory {
  static constexpr uint64_t kSize = 64 * 1024;
  TempDir dir;
  std::string image = dir / "disk.img";
  std::string journal = dir / "disk.rewind";
  std::vector<std::vector<uint8_t>> states;  // states[s] = volume after seq s
  std::map<std::string, uint64_t> marks;     // name -> seq, with `mark_every`

  // `ops` writes, zeroes and trims of random places and lengths; a mark after every
  // `mark_every` of them (0: none). Segments roll every 16 KiB, so targets cross them.
  RandomHistory(uint64_t seed, int ops, int mark_every = 0) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> state = pattern(kSize, seed);  // a base that is not all zeroes
    write_file(image, state);
    VolumeOptions o;
    o.image_path = image;
    o.journal_dir = journal;
    o.journal.segment_size = 16 * 1024;
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();  // marks wait for the flusher
    states.push_back(state);
    for (int i = 0; i < ops; ++i) {
      uint64_t off = rng() % kSize;
      uint64_t len = 1 + rng() % std::min<uint64_t>(kSize - off, i % 8 == 0 ? kSize : 4096);
      int kind = static_cast<int>(rng() % 10);
      if (kind < 7) {
        auto data = pattern(len, rng());
        REQUIRE((*v)->write(data, off, false).is_ok());
        std::copy(data.begin(), data.end(), state.begin() + static_cast<long>(off));
      } else {
        REQUIRE((kind < 9 ? (*v)->zero(off, len, false) : (*v)->trim(off, len, false)).is_ok());
        std::fill_n(state.begin() + static_cast<long>(off), len, 0);
      }
      states.push_back(state);
      if (mark_every != 0 && i % mark_every == mark_every - 1) {
        std::string name = fmt::format("m{}", i);
        auto stamp = (*v)->mark(name);
        REQUIRE(stamp.is_ok());
        marks[name] = stamp->seq;
        states.push_back(state);  // a mark changes no byte
      }
    }
    REQUIRE((*v)->close().is_ok());
  }
};

}  // namespace rwd::test
