// Payload codecs (format::Codec): round trips whole and in part, incompressible data
// stored as it is, header constraints, and damage to a compressed record found by
// the segment reader wherever it lies.
#include <catch2/catch.hpp>

#include <random>

#include "rewind/format/payload_codec.h"
#include "rewind/format/record.h"
#include "rewind/format/segment.h"
#include "test_util.h"

using namespace rwd;
using format::Codec;
using format::kCodecFrameSize;

namespace {

std::vector<uint8_t> decode_range(std::span<const uint8_t> stored, uint64_t length, uint64_t at,
                                  uint64_t n) {
  const FrameSpan span = frames_of(length, at, n);
  std::vector<uint8_t> frames(span.decoded_end - span.decoded_begin);
  Status st = decode_frames(stored, length, span, frames);
  INFO(st.message());
  REQUIRE(st.is_ok());
  const auto from = static_cast<long>(at - span.decoded_begin);
  return {frames.begin() + from, frames.begin() + from + static_cast<long>(n)};
}

// A compressed WRITE record of `data` at seq `seq`, with its stored payload.
struct Encoded {
  RecordHeader header;
  std::vector<uint8_t> stored;
};
Encoded encoded_write(uint64_t seq, const std::vector<uint8_t>& data) {
  PayloadEncoder enc(Compression{Codec::kZstd, 1});
  Encoded e;
  REQUIRE(enc.encode(data, &e.stored));
  e.header.type = format::RecordType::kWrite;
  e.header.seq = seq;
  e.header.time_ns = 1000 + seq;
  e.header.offset = 4096 * seq;
  e.header.length = data.size();
  e.header.codec = Codec::kZstd;
  e.header.payload_length = static_cast<uint32_t>(e.stored.size());
  e.header.payload_checksum = payload_checksum(e.stored);
  return e;
}

}  // namespace

TEST_CASE("compressible payloads round-trip whole and in part across frames", "[codec]") {
  const uint64_t f = kCodecFrameSize;
  for (uint64_t size : {uint64_t{512}, uint64_t{4096}, f - 1, f, f + 1, 3 * f + 17, 40 * f}) {
    CAPTURE(size);
    const auto data = test::compressible(size, size);
    PayloadEncoder enc(Compression{Codec::kZstd, 3});
    std::vector<uint8_t> stored;
    REQUIRE(enc.encode(data, &stored));
    CHECK(stored.size() <= max_stored_length(Codec::kZstd, size));
    CHECK(stored.size() < size / 2);
    std::vector<uint8_t> whole(size);
    REQUIRE(decode_payload(Codec::kZstd, stored, whole).is_ok());
    CHECK(whole == data);
    // Reads of a part: each frame boundary, a byte each side of it, and random ones.
    std::mt19937_64 rng(size);
    std::vector<std::pair<uint64_t, uint64_t>> parts{{0, 1}, {size - 1, 1}, {0, size}};
    for (uint64_t b = f; b < size; b += f)
      parts.insert(parts.end(), {{b - 1, 2}, {b, 1}, {b - 1, 1}});
    for (int i = 0; i < 20; ++i) {
      const uint64_t at = rng() % size;
      parts.emplace_back(at, 1 + rng() % (size - at));
    }
    for (auto [at, n] : parts) {
      CAPTURE(at, n);
      const auto got = decode_range(stored, size, at, n);
      CHECK(std::equal(got.begin(), got.end(), data.begin() + static_cast<long>(at)));
    }
  }
}

TEST_CASE("data that does not compress is stored as it is", "[codec]") {
  PayloadEncoder enc(Compression{Codec::kZstd, 1});
  std::vector<uint8_t> out;
  for (size_t size : {size_t{512}, size_t{4096}, size_t{1} << 20}) {
    CAPTURE(size);
    CHECK_FALSE(enc.encode(test::pattern(size, size), &out));
    CHECK(out.empty());
  }
  // The first frame decides: random bytes there, zeroes after, is not tried further.
  auto data = test::pattern(4 * kCodecFrameSize, 1);
  std::fill(data.begin() + kCodecFrameSize, data.end(), 0);
  CHECK_FALSE(enc.encode(data, &out));
  // Compression off encodes nothing.
  PayloadEncoder off(Compression{});
  CHECK_FALSE(off.encode(std::vector<uint8_t>(65536, 0), &out));
}

TEST_CASE("compress= takes off, zstd and zstd:LEVEL", "[codec]") {
  CHECK(*parse_compression("off") == Compression{});
  CHECK(*parse_compression("zstd") == Compression{Codec::kZstd, kDefaultZstdLevel});
  CHECK(*parse_compression("zstd:19") == Compression{Codec::kZstd, 19});
  for (const char* bad : {"", "on", "zstd:", "zstd:0", "zstd:20", "zstd:3x", "lz4", "zstd:-1"}) {
    CAPTURE(bad);
    auto got = parse_compression(bad);
    REQUIRE_FALSE(got.is_ok());
    CHECK(got.status().message() == "must be off, zstd or zstd:LEVEL with LEVEL 1 to 19");
  }
  CHECK(compression_name(Compression{Codec::kZstd, 3}) == "zstd:3");
}

TEST_CASE("a codec is valid only on a WRITE, and only with a payload it could give",
          "[codec][record]") {
  const Encoded e = encoded_write(1, test::compressible(8192, 1));
  CHECK(validate_header(e.header).is_ok());
  auto refused = [](RecordHeader h) { return !validate_header(h).is_ok(); };
  RecordHeader h = e.header;
  h.type = format::RecordType::kZero;
  CHECK(refused(h));
  h = e.header;
  h.flags |= format::kFlagSuperseded;
  CHECK(refused(h));
  h = e.header;
  h.payload_length = static_cast<uint32_t>(h.length);  // saves nothing
  CHECK(refused(h));
  h = e.header;
  h.payload_length = 4;  // no more than its frame table
  CHECK(refused(h));
  h = e.header;
  h.codec = static_cast<Codec>(2);
  CHECK(refused(h));
  // The codec byte is covered by the header checksum and decoded back.
  const EncodedHeader bytes = encode_header(e.header);
  RecordHeader back;
  REQUIRE(decode_header(bytes.data(), &back).is_ok());
  CHECK(back == e.header);
}

TEST_CASE("a flipped bit anywhere in a compressed record is found by the segment reader",
          "[codec][segment][errors]") {
  test::TempDir dir;
  const std::string path = dir / "1.seg";
  const VolumeId id = random_volume_id();
  const auto data = test::compressible(3 * kCodecFrameSize + 100, 7);
  const Encoded e = encoded_write(1, data);
  {
    auto w = SegmentWriter::create(path, SegmentHeader{id, 1, 1}, 0);
    REQUIRE(w.is_ok());
    RecordHeader h = e.header;
    h.flags |= format::kFlagBatchStart;
    const EncodedHeader hb = encode_header(h);
    const RecordRef ref{hb.data(), e.stored};
    REQUIRE(w->append(std::span(&ref, 1)).is_ok());
    REQUIRE(w->seal().is_ok());
  }
  {
    auto r = SegmentReader::open(path, true);
    REQUIRE(r.is_ok());
    RecordView v;
    REQUIRE(*r->next(&v));
    CHECK(std::equal(v.payload.begin(), v.payload.end(), data.begin(), data.end()));
    CHECK(v.stored.size() == e.stored.size());
    CHECK(v.header.codec == Codec::kZstd);
  }
  const uint64_t record_bytes = format::kRecordHeaderSize + e.stored.size();
  std::mt19937_64 rng(11);
  for (int i = 0; i < 400; ++i) {
    // Every byte of the header and the frame table, then random ones of the frames.
    const uint64_t at = i < 120 ? static_cast<uint64_t>(i) : rng() % record_bytes;
    const int bit = static_cast<int>(rng() % 8);
    CAPTURE(at, bit);
    test::flip_bit(path, format::kSegmentHeaderSize + at, bit);
    auto r = SegmentReader::open(path, true);
    REQUIRE(r.is_ok());
    RecordView v;
    auto got = r->next(&v);
    CHECK_FALSE(got.is_ok());
    if (!got.is_ok()) CHECK(got.status().message().find("offset 64") != std::string::npos);
    test::flip_bit(path, format::kSegmentHeaderSize + at, bit);
  }
}
