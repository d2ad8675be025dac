#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "rewind/format/segment.h"
#include "test_util.h"

using namespace rwd;
using format::RecordType;

namespace {

struct TestRecord {
  RecordHeader header;
  std::vector<uint8_t> payload;
};

TestRecord make_write(uint64_t seq, uint64_t offset, size_t len) {
  TestRecord r;
  r.payload = test::pattern(len, seq);
  r.header.type = RecordType::kWrite;
  r.header.seq = seq;
  r.header.time_ns = 1000 + seq;
  r.header.offset = offset;
  r.header.length = len;
  r.header.payload_length = static_cast<uint32_t>(len);
  r.header.payload_checksum = payload_checksum(r.payload);
  return r;
}

// Writes `batches` (each a list of records) to a new segment, one append and sync
// per batch, as the flusher does. Returns the offsets of the records.
std::vector<uint64_t> write_segment(const std::string& path, const VolumeId& id, uint64_t first_seq,
                                    const std::vector<std::vector<TestRecord>>& batches,
                                    uint64_t prealloc, bool seal) {
  auto w = SegmentWriter::create(path, SegmentHeader{id, first_seq, 1}, prealloc);
  REQUIRE(w.is_ok());
  std::vector<uint64_t> offsets;
  for (const auto& batch : batches) {
    std::vector<EncodedHeader> headers(batch.size());
    std::vector<RecordRef> refs;
    for (size_t i = 0; i < batch.size(); ++i) {
      RecordHeader h = batch[i].header;
      if (i == 0) h.flags |= format::kFlagBatchStart;
      encode_header(h, headers[i].data());
      refs.push_back(RecordRef{headers[i].data(), batch[i].payload});
      offsets.push_back(w->end() + (offsets.empty() ? 0 : 0));
    }
    uint64_t pos = w->end();
    for (size_t i = 0; i < batch.size(); ++i) {
      offsets[offsets.size() - batch.size() + i] = pos;
      pos += format::record_span(static_cast<uint32_t>(batch[i].payload.size()));
    }
    REQUIRE(w->append(refs).is_ok());
    REQUIRE(w->sync().is_ok());
  }
  if (seal) REQUIRE(w->seal().is_ok());
  return offsets;
}

struct ReadBack {
  std::vector<RecordView> records;  // payload spans are invalid after reading
  std::vector<std::vector<uint8_t>> payloads;
  Status status;
  std::optional<std::string> torn;
  uint64_t end = 0;
};

ReadBack read_segment(const std::string& path, bool sealed) {
  ReadBack out;
  auto r = SegmentReader::open(path, sealed);
  if (!r) {
    out.status = r.status();
    return out;
  }
  RecordView v;
  for (;;) {
    auto more = r->next(&v);
    if (!more) {
      out.status = more.status();
      return out;
    }
    if (!*more) break;
    out.records.push_back(v);
    out.payloads.emplace_back(v.payload.begin(), v.payload.end());
  }
  out.torn = r->torn_tail();
  out.end = r->end();
  return out;
}

std::vector<std::vector<TestRecord>> three_batches() {
  return {{make_write(1, 0, 4096), make_write(2, 8192, 100)},
          {make_write(3, 512, 1000), make_write(4, 0, 7)},
          {make_write(5, 65536, 4096)}};
}

}  // namespace

TEST_CASE("segment header round-trips and rejects damage", "[segment]") {
  SegmentHeader h{random_volume_id(), 42, 123456789};
  uint8_t buf[format::kSegmentHeaderSize];
  encode_segment_header(h, buf);
  SegmentHeader back;
  REQUIRE(decode_segment_header(buf, &back).is_ok());
  CHECK(back.volume_id == h.volume_id);
  CHECK(back.first_seq == 42);
  CHECK(back.created_ns == 123456789);
  for (size_t i = 0; i < sizeof buf; ++i) {
    uint8_t bad[sizeof buf];
    std::memcpy(bad, buf, sizeof buf);
    bad[i] ^= 0x10;
    CAPTURE(i);
    CHECK_FALSE(decode_segment_header(bad, &back).is_ok());
  }
}

TEST_CASE("records written in batches read back in order with their payloads", "[segment]") {
  test::TempDir dir;
  const std::string path = dir / "s.seg";
  auto batches = three_batches();
  bool seal = GENERATE(true, false);
  uint64_t prealloc = GENERATE(uint64_t{0}, uint64_t{1} << 20);
  CAPTURE(seal, prealloc);
  auto offsets = write_segment(path, random_volume_id(), 1, batches, prealloc, seal);
  ReadBack rb = read_segment(path, seal);
  REQUIRE(rb.status.is_ok());
  CHECK_FALSE(rb.torn);
  REQUIRE(rb.records.size() == 5);
  size_t k = 0;
  for (const auto& batch : batches) {
    for (size_t i = 0; i < batch.size(); ++i, ++k) {
      RecordHeader expect = batch[i].header;
      if (i == 0) expect.flags |= format::kFlagBatchStart;
      CHECK(rb.records[k].header == expect);
      CHECK(rb.payloads[k] == batch[i].payload);
      CHECK(rb.records[k].position == offsets[k]);
      CHECK(rb.records[k].position % format::kRecordAlignment == 0);
    }
  }
  if (seal) CHECK(test::read_file(path).size() == rb.end);
}

TEST_CASE("a torn last batch of the open segment is a torn tail and not corruption", "[segment]") {
  test::TempDir dir;
  const std::string path = dir / "s.seg";
  auto offsets = write_segment(path, random_volume_id(), 1, three_batches(), 1 << 20, false);
  const uint64_t last = offsets[4];  // the last batch is record 5 alone

  SECTION("last record cut short") {
    test::truncate_file(path, last + 100);
  }
  SECTION("last record's payload damaged") {
    test::flip_bit(path, last + 60, 3);
  }
  SECTION("last record's header damaged") {
    test::flip_bit(path, last + 20, 0);
  }
  ReadBack rb = read_segment(path, false);
  REQUIRE(rb.status.is_ok());
  CHECK(rb.records.size() == 4);
  REQUIRE(rb.torn);
  CHECK(rb.torn->find(fmt::format("offset {}", last)) != std::string::npos);
  CHECK(rb.end == last);
}

TEST_CASE("an open segment sealed while it is read ends cleanly where its records end",
          "[segment]") {
  // The reader takes the file's size when it opens; sealing then cuts the file to its
  // records' end (the preallocated space goes), as when `rewind info` reads a live
  // journal whose flusher seals the open segment. Records larger than the reader's
  // window, so that the read past the end does not come from bytes read before.
  test::TempDir dir;
  const std::string path = dir / "s.seg";
  const std::vector<std::vector<TestRecord>> batches = {{make_write(1, 0, 600 << 10)},
                                                        {make_write(2, 1 << 20, 600 << 10)},
                                                        {make_write(3, 2 << 20, 600 << 10)}};
  auto offsets = write_segment(path, random_volume_id(), 1, batches, 8 << 20, false);
  const uint64_t end = offsets[2] + format::record_span(600 << 10);
  REQUIRE(test::read_file(path).size() > end);  // preallocated
  auto r = SegmentReader::open(path, false);
  REQUIRE(r.is_ok());
  test::truncate_file(path, end);  // what SegmentWriter::seal does
  RecordView v;
  uint64_t seq = 0;
  for (;;) {
    auto more = r->next(&v);
    INFO((more ? std::string() : more.status().message()));
    REQUIRE(more.is_ok());
    if (!*more) break;
    CHECK(v.header.seq == ++seq);
  }
  CHECK(seq == 3);
  CHECK_FALSE(r->torn_tail());
  CHECK(r->end() == end);
}

TEST_CASE("damage inside the last batch is torn even if later records of it survive", "[segment]") {
  test::TempDir dir;
  const std::string path = dir / "s.seg";
  auto offsets = write_segment(path, random_volume_id(), 1, three_batches(), 1 << 20, false);
  test::flip_bit(path, offsets[2] + 30, 1);  // record 3 starts the second (not last) batch...
  // ...but record 5 starts a later batch, so this is corruption:
  ReadBack rb = read_segment(path, false);
  CHECK(rb.status.code() == Status::Code::kCorruption);
  CHECK(rb.status.message().find(fmt::format("offset {} seq 3", offsets[2])) != std::string::npos);
  CHECK(rb.status.message().find("later batch (seq 5)") != std::string::npos);

  // Whereas damage to record 3 when records 3 and 4 form the last batch is a torn tail.
  const std::string path2 = dir / "t.seg";
  auto b = three_batches();
  b.pop_back();
  auto offsets2 = write_segment(path2, random_volume_id(), 1, b, 1 << 20, false);
  test::flip_bit(path2, offsets2[2] + 30, 1);
  ReadBack rb2 = read_segment(path2, false);
  REQUIRE(rb2.status.is_ok());
  CHECK(rb2.records.size() == 2);
  CHECK(rb2.torn);
}

TEST_CASE("any damage to a sealed segment is corruption naming segment and offset and seq",
          "[segment]") {
  test::TempDir dir;
  const std::string path = dir / "00000000000000000001.seg";
  auto offsets = write_segment(path, random_volume_id(), 1, three_batches(), 0, true);
  uint64_t where = 0, seq = 0;
  SECTION("flipped payload byte of the last record") {
    where = offsets[4];
    seq = 5;
    test::flip_bit(path, offsets[4] + 100, 2);
  }
  SECTION("flipped header byte of a middle record") {
    where = offsets[1];
    seq = 2;
    test::flip_bit(path, offsets[1] + 9, 0);
  }
  SECTION("truncated") {
    where = offsets[4];
    seq = 5;
    test::truncate_file(path, offsets[4] + 10);
  }
  ReadBack rb = read_segment(path, true);
  REQUIRE(rb.status.code() == Status::Code::kCorruption);
  CAPTURE(rb.status.message());
  CHECK(rb.status.message().find("segment 00000000000000000001.seg") != std::string::npos);
  CHECK(rb.status.message().find(fmt::format("offset {} seq {}", where, seq)) != std::string::npos);
}

TEST_CASE("a seq gap or time going backwards is corruption", "[segment]") {
  test::TempDir dir;
  const std::string path = dir / "s.seg";
  std::vector<std::vector<TestRecord>> batches;
  SECTION("gap") {
    batches = {{make_write(1, 0, 512), make_write(3, 0, 512)}};
  }
  SECTION("time backwards") {
    auto a = make_write(1, 0, 512), b = make_write(2, 0, 512);
    b.header.time_ns = a.header.time_ns - 1;
    batches = {{a, b}};
  }
  write_segment(path, random_volume_id(), 1, batches, 0, true);
  ReadBack rb = read_segment(path, true);
  CHECK(rb.status.code() == Status::Code::kCorruption);
  CHECK(rb.status.message().find("seq 2") != std::string::npos);
}

TEST_CASE("an empty open segment reads as no records and no torn tail", "[segment]") {
  test::TempDir dir;
  write_segment(dir / "s.seg", random_volume_id(), 7, {}, 1 << 20, false);
  ReadBack rb = read_segment(dir / "s.seg", false);
  REQUIRE(rb.status.is_ok());
  CHECK(rb.records.empty());
  CHECK_FALSE(rb.torn);
  CHECK(rb.end == format::kSegmentHeaderSize);
}

TEST_CASE("a file that is not a segment is refused", "[segment]") {
  test::TempDir dir;
  test::write_file(dir / "x.seg", test::pattern(200, 1));
  CHECK(SegmentReader::open(dir / "x.seg", true).status().code() == Status::Code::kCorruption);
  test::write_file(dir / "y.seg", {1, 2, 3});
  CHECK(SegmentReader::open(dir / "y.seg", true).status().code() == Status::Code::kCorruption);
}
