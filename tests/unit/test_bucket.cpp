// A volume in a bucket, the parts that need no S3 server: the bucket manifest, the base
// map and the writer claim (docs/FORMAT.md, "A volume in a bucket"). Shipping and
// reading are tested against a real RADOS Gateway (tests/e2e/test-s3*.sh).
#include <catch2/catch.hpp>

#include "rewind/format/file_names.h"
#include "rewind/ship/bucket.h"
#include "test_util.h"

using namespace rwd;
using namespace rwd::test;

namespace {

BucketManifest sample_manifest() {
  BucketManifest m;
  m.writer = 3;
  m.owner = 3;
  m.last_seq = 57;
  Manifest& j = m.journal;
  j.volume_id = random_volume_id();
  j.image_path = "/var/lib/rewind/disk one.img";
  j.image_size = 64 << 20;
  j.created_ns = 1'700'000'000'000'000'000;
  j.base_file = base_file_name(0);
  j.base_seq = 0;
  j.base_time_ns = j.created_ns;
  ManifestSegment s1;
  s1.file = segment_file_name(1);
  s1.first_seq = 1;
  s1.last_seq = 40;
  s1.sealed = true;
  s1.bytes = 1 << 20;
  s1.records = 40;
  s1.first_time_ns = j.created_ns + 1;
  s1.last_time_ns = j.created_ns + 40;
  ManifestSegment s2;
  s2.file = segment_file_name(41);
  s2.first_seq = 41;
  j.segments = {s1, s2};
  j.marks = {ManifestMark{"before-upgrade", 17, j.created_ns + 17}};
  m.segments = {BucketSegment{s1.file, 2, true}};
  m.tails = {BucketTail{41, 0, 8192, 2}, BucketTail{41, 8192, 20480, 3}};
  return m;
}

}  // namespace

TEST_CASE("bucket manifest: round trip, and every damage detected") {
  const BucketManifest m = sample_manifest();
  const std::string text = m.serialize();
  auto back = BucketManifest::parse(text, "MANIFEST");
  INFO(back.status().message());
  REQUIRE(back);
  CHECK(*back == m);
  CHECK(back->object_names() ==
        std::vector<std::string>{
            bucket::base_map_key(m.journal.volume_id, 0),
            "segments/00000000000000000002/00000000000000000001.seg",
            "segments/00000000000000000002/00000000000000000001.idx",
            "tail/00000000000000000002/00000000000000000041-00000000000000000000",
            "tail/00000000000000000003/00000000000000000041-00000000000000008192"});

  SECTION("a flipped byte anywhere is a checksum mismatch") {
    for (size_t i = 0; i < text.size(); i += 7) {
      std::string bad = text;
      bad[i] = static_cast<char>(bad[i] ^ 0x01);
      auto r = BucketManifest::parse(bad, "MANIFEST");
      INFO(i);
      REQUIRE_FALSE(r);
      CHECK(r.status().code() == Status::Code::kCorruption);
    }
  }
  SECTION("cut short anywhere is refused") {
    for (size_t n = 0; n < text.size(); n += 11)
      CHECK_FALSE(BucketManifest::parse(text.substr(0, n), "MANIFEST"));
  }
  SECTION("tails that leave a gap, or a sealed line for no segment, are refused") {
    BucketManifest gap = m;
    gap.tails[1].offset = 8000;
    auto r = BucketManifest::parse(gap.serialize(), "MANIFEST");
    REQUIRE_FALSE(r);
    CHECK_THAT(r.status().message(), Catch::Contains("tail pieces"));
    BucketManifest extra = m;
    extra.segments.push_back(BucketSegment{"00000000000000000099.seg", 3, false});
    CHECK_FALSE(BucketManifest::parse(extra.serialize(), "MANIFEST"));
    BucketManifest no_tails = m;
    no_tails.tails.clear();
    CHECK_FALSE(BucketManifest::parse(no_tails.serialize(), "MANIFEST"));
  }
}

TEST_CASE("base map and writer claim: round trip and damage") {
  BaseMap b;
  b.file_size = 10 * bucket::kBaseChunkBytes + 4096;
  b.chunks = {{0, 0x1234, 0},
              {3 * bucket::kBaseChunkBytes, 0xfedcba9876543210ull, 40, 100},
              {10 * bucket::kBaseChunkBytes, 7, 41}};
  CHECK(b.chunk_length(10 * bucket::kBaseChunkBytes) == 4096);
  // An object shorter than its chunk counts as what it holds.
  CHECK(b.data_bytes() == bucket::kBaseChunkBytes + 100 + 4096);
  const std::string text = b.serialize();
  auto back = BaseMap::parse(text, "MAP");
  REQUIRE(back);
  CHECK(*back == b);
  std::string bad = text;
  bad[text.find("data") + 6] ^= 1;
  CHECK_FALSE(BaseMap::parse(bad, "MAP"));
  BaseMap unordered = b;
  std::swap(unordered.chunks[0], unordered.chunks[1]);
  CHECK_FALSE(BaseMap::parse(unordered.serialize(), "MAP"));
  BaseMap unaligned = b;
  unaligned.chunks[1].offset += 512;
  CHECK_FALSE(BaseMap::parse(unaligned.serialize(), "MAP"));
  // A stored size must be shorter than the chunk.
  for (uint64_t stored : {uint64_t{4096}, uint64_t{5000}}) {
    BaseMap whole = b;
    whole.chunks[2].stored = stored;
    CHECK_FALSE(BaseMap::parse(whole.serialize(), "MAP"));
  }

  WriterClaim c;
  c.gen = 9;
  c.host = "db1.example";
  c.pid = 4242;
  c.started_ns = 1'700'000'000'000'000'000;
  c.volume_id = random_volume_id();
  auto cb = WriterClaim::parse(c.serialize(), "claim");
  REQUIRE(cb);
  CHECK(cb->gen == 9);
  CHECK(cb->host == "db1.example");
  CHECK(cb->volume_id == c.volume_id);
  CHECK_THAT(cb->describe(), Catch::Contains("generation 9") && Catch::Contains("db1.example") &&
                                 Catch::Contains("pid 4242"));
}
