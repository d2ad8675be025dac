// A random history written through a real volume, with the reference state (a byte
// array) after every record: the model the property tests of views, restores,
// rebases and compactions compare with; and the checks they share.
#pragma once

#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "rewind/format/manifest.h"
#include "rewind/format/segment_index.h"
#include "rewind/replay/restore.h"
#include "rewind/replay/view.h"
#include "rewind/volume/volume.h"
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
  // With `tick_ns`, record n is stamped n ticks after a whole second just after the
  // journal's creation, instead of the time it was written.
  // With `coalesce`, the volume coalesces queued writes (VolumeOptions::coalesce).
  // With `compression`, the journal stores payloads compressed where that pays, and
  // half of the writes are of data that compresses: the journal mixes both forms.
  RandomHistory(uint64_t seed, int ops, int mark_every = 0, uint64_t tick_ns = 0,
                bool coalesce = false, Compression compression = {}) {
    std::mt19937_64 rng(seed);
    std::mt19937_64 pick(seed + 1);
    std::vector<uint8_t> state = pattern(kSize, seed);  // a base that is not all zeroes
    write_file(image, state);
    VolumeOptions o;
    o.image_path = image;
    o.journal_dir = journal;
    o.journal.segment_size = 16 * 1024;
    o.coalesce = coalesce;
    o.journal.compression = compression;
    if (tick_ns != 0)
      o.clock = [tick_ns, start = (wall_clock_ns() / 1'000'000'000 + 2) * 1'000'000'000,
                 n = uint64_t{0}]() mutable { return start + ++n * tick_ns; };
    auto v = Volume::open(o, {});
    REQUIRE(v.is_ok());
    (*v)->start();  // marks wait for the flusher
    states.push_back(state);
    for (int i = 0; i < ops; ++i) {
      uint64_t off = rng() % kSize;
      uint64_t len = 1 + rng() % std::min<uint64_t>(kSize - off, i % 8 == 0 ? kSize : 4096);
      int kind = static_cast<int>(rng() % 10);
      if (kind < 7) {
        // The same offsets, lengths and kinds as without compression: its choices
        // come from a generator of their own.
        const bool compresses = compression.codec != format::Codec::kNone && pick() % 2 == 0;
        const uint64_t data_seed = rng();
        auto data = compresses ? compressible(len, data_seed) : pattern(len, data_seed);
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

// The volume as `journal` holds it at `seq`.
inline std::vector<uint8_t> state_at(const std::string& journal, uint64_t seq) {
  auto view = JournalView::open(journal, Target::at_seq(seq), {});
  INFO(view.status().message());
  REQUIRE(view.is_ok());
  std::vector<uint8_t> got((*view)->size());
  REQUIRE((*view)->read(got, 0).is_ok());
  return got;
}

// Every file of the journal is one the manifest names (and LOCK, MANIFEST).
inline void check_no_leftovers(const std::string& journal) {
  auto m = Manifest::load(journal);
  REQUIRE(m.is_ok());
  std::set<std::string> expected{m->base_file};
  for (const ManifestSegment& seg : m->segments) {
    expected.insert(seg.file);
    if (seg.sealed) expected.insert(index_file_name(seg.file));
  }
  std::set<std::string> found;
  for (const char* sub : {"base", "segments"})
    for (const auto& e : std::filesystem::directory_iterator(journal + "/" + sub))
      found.insert(e.path().filename().string());
  CHECK(found == expected);
}

// The journal is whole and agrees with the image: no file the manifest does not name,
// every checksum holds, and the image is the replay of the journal (rewind verify
// --image).
inline void check_intact(const std::string& journal, const std::string& image) {
  check_no_leftovers(journal);
  VerifyReport report;
  Status verified = verify_journal(journal, image, &report, {});
  INFO(verified.message());
  CHECK(verified.is_ok());
}

// After a crash or power cut: the volume opens (recovering what it must), closes
// cleanly, and leaves its journal intact.
inline void check_reopens_intact(const VolumeOptions& o) {
  std::string log;
  auto v = Volume::open(o, [&](LogLevel, const std::string& msg) { log += msg + "\n"; });
  INFO(log);
  INFO(v.status().message());
  REQUIRE(v.is_ok());
  REQUIRE((*v)->close().is_ok());
  check_intact(o.journal_dir, o.image_path);
}

// A copy of `h`'s image and journal in `root` (made anew), the journal pointed at the
// copied image (the xattr tag does not travel).
inline void copy_volume(const RandomHistory& h, const std::string& root) {
  std::filesystem::remove_all(root);
  std::filesystem::create_directory(root);
  std::filesystem::copy(h.journal, root + "/disk.rewind", std::filesystem::copy_options::recursive);
  std::filesystem::copy(h.image, root + "/disk.img");
  auto m = Manifest::load(root + "/disk.rewind");
  REQUIRE(m.is_ok());
  m->image_path = root + "/disk.img";
  REQUIRE(m->store(root + "/disk.rewind").is_ok());
}

// `change` (a rebase or compaction of `h`) is refused while the volume is open, as
// when the plugin serves it, and changes nothing.
template <class F>
void check_refused_while_served(const RandomHistory& h, F&& change) {
  const auto manifest = read_file(h.journal + "/MANIFEST");
  VolumeOptions o;
  o.image_path = h.image;
  o.journal_dir = h.journal;
  auto v = Volume::open(o, {});
  REQUIRE(v.is_ok());
  Status busy = change();
  REQUIRE_FALSE(busy.is_ok());
  CHECK(busy.message().find("is in use") != std::string::npos);
  REQUIRE((*v)->close().is_ok());
  CHECK(read_file(h.journal + "/MANIFEST") == manifest);
}

}  // namespace rwd::test
