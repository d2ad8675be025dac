#include <catch2/catch.hpp>

#include "rewind/base/file.h"
#include "rewind/format/manifest.h"
#include "test_util.h"

using namespace rwd;

namespace {
Manifest sample() {
  Manifest m;
  m.volume_id = random_volume_id();
  m.image_path = "/var/lib/images/my disk.img";
  m.image_size = 1ull << 30;
  m.created_ns = 1764064800000000000;
  m.base_file = "00000000000000000000.img";
  m.base_seq = 0;
  m.base_time_ns = m.created_ns;
  m.checkpoint_seq = 150;
  ManifestSegment a{
      "00000000000000000001.seg", 1, true, 100, 4096, 100, m.created_ns + 1, m.created_ns + 9};
  ManifestSegment b{"00000000000000000101.seg", 101, false};
  m.segments = {a, b};
  return m;
}
}  // namespace

TEST_CASE("manifest round-trips through its text form", "[manifest]") {
  Manifest m = sample();
  auto back = Manifest::parse(m.serialize(), "MANIFEST");
  REQUIRE(back.is_ok());
  CHECK(*back == m);
}

TEST_CASE("manifest store replaces the file atomically and leaves no temporary", "[manifest]") {
  test::TempDir dir;
  Manifest m = sample();
  REQUIRE(m.store(dir.path()).is_ok());
  m.checkpoint_seq = 160;
  REQUIRE(m.store(dir.path()).is_ok());
  auto back = Manifest::load(dir.path());
  REQUIRE(back.is_ok());
  CHECK(back->checkpoint_seq == 160);
  CHECK_FALSE(std::filesystem::exists(dir / "MANIFEST.tmp"));

  // A crash before the rename leaves a temporary beside the old manifest: the old one
  // is what loads.
  test::write_file(dir / "MANIFEST.tmp", {'g', 'a', 'r', 'b', 'a', 'g', 'e'});
  back = Manifest::load(dir.path());
  REQUIRE(back.is_ok());
  CHECK(back->checkpoint_seq == 160);
}

TEST_CASE("a damaged manifest is refused with where and why", "[manifest]") {
  std::string text = sample().serialize();
  std::string bad = text;
  SECTION("flipped byte") {
    bad[40] ^= 1;
  }
  SECTION("cut short") {
    bad.resize(text.size() / 2);
  }
  SECTION("checksum line removed") {
    bad = text.substr(0, text.rfind("checksum"));
  }
  auto r = Manifest::parse(bad, "/j/MANIFEST");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().code() == Status::Code::kCorruption);
  CHECK(r.status().message().find("/j/MANIFEST") != std::string::npos);
}

TEST_CASE("manifest lines that break the rules are refused by line number", "[manifest]") {
  // serialize() writes a valid checksum, so only the content is wrong.
  Manifest m = sample();
  std::string why;
  SECTION("segments out of seq order") {
    m.segments[1].first_seq = 200;
    why = "previous one ends at 100";
  }
  SECTION("record count disagrees with the seq range") {
    m.segments[0].records = 5;
    why = "disagree";
  }
  SECTION("segment after the open one") {
    m.segments[0].sealed = false;
    why = "after the open segment";
  }
  SECTION("path separator in a segment name") {
    m.segments[0].file = "../x.seg";
    why = "bad segment line";
  }
  auto r = Manifest::parse(m.serialize(), "MANIFEST");
  REQUIRE_FALSE(r.is_ok());
  CAPTURE(r.status().message());
  CHECK(r.status().message().find("line ") != std::string::npos);
  CHECK(r.status().message().find(why) != std::string::npos);
}
