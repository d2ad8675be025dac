#include <catch2/catch.hpp>

#include "rewind/format/record.h"
#include "test_util.h"

using namespace rwd;
using format::RecordType;

namespace {
RecordHeader sample(RecordType type) {
  RecordHeader h;
  h.type = type;
  h.seq = 0x0102030405060708;
  h.time_ns = 0x1112131415161718;
  switch (type) {
    case RecordType::kWrite:
      h.offset = 0x2122232425262728;
      h.length = 4096;
      h.payload_length = 4096;
      break;
    case RecordType::kZero:
    case RecordType::kTrim:
      h.offset = 1u << 20;
      h.length = 0xffffffffu;
      break;
    case RecordType::kMark:
      h.payload_length = 9;
      break;
    default:
      break;
  }
  h.payload_checksum = 0x3132333435363738;
  return h;
}
}  // namespace

TEST_CASE("every record type round-trips with every field", "[codec]") {
  auto type = GENERATE(RecordType::kWrite, RecordType::kZero, RecordType::kTrim, RecordType::kMark);
  auto flags = GENERATE(uint8_t{0}, format::kFlagBatchStart);
  RecordHeader h = sample(type);
  h.flags = flags;
  CAPTURE(record_type_name(type), flags);
  EncodedHeader enc = encode_header(h);
  RecordHeader back;
  REQUIRE(decode_header(enc.data(), &back).is_ok());
  CHECK(back.type == h.type);
  CHECK(back.flags == h.flags);
  CHECK(back.payload_length == h.payload_length);
  CHECK(back.seq == h.seq);
  CHECK(back.time_ns == h.time_ns);
  CHECK(back.offset == h.offset);
  CHECK(back.length == h.length);
  CHECK(back.payload_checksum == h.payload_checksum);
  CHECK(back == h);
}

TEST_CASE("fields are stored little-endian at their documented offsets", "[codec]") {
  RecordHeader h = sample(RecordType::kWrite);
  EncodedHeader enc = encode_header(h);
  CHECK(enc[8] == 1);                       // type
  CHECK(get_u32(enc.data() + 12) == 4096);  // payload_length
  CHECK(enc[16] == 0x08);                   // seq, least significant byte first
  CHECK(get_u64(enc.data() + 16) == h.seq);
  CHECK(get_u64(enc.data() + 24) == h.time_ns);
  CHECK(get_u64(enc.data() + 32) == h.offset);
  CHECK(get_u64(enc.data() + 40) == h.length);
  CHECK(get_u64(enc.data() + 48) == h.payload_checksum);
}

TEST_CASE("a flipped bit anywhere in a header is detected", "[codec]") {
  auto type = GENERATE(RecordType::kWrite, RecordType::kZero, RecordType::kMark);
  EncodedHeader enc = encode_header(sample(type));
  for (size_t byte = 0; byte < enc.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      EncodedHeader bad = enc;
      bad[byte] ^= static_cast<uint8_t>(1u << bit);
      RecordHeader out;
      CAPTURE(byte, bit);
      CHECK_FALSE(decode_header(bad.data(), &out).is_ok());
    }
  }
}

TEST_CASE("a flipped bit anywhere in a payload changes its checksum", "[codec]") {
  auto payload = test::pattern(512, 7);
  uint64_t sum = payload_checksum(payload);
  for (size_t byte = 0; byte < payload.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      payload[byte] ^= static_cast<uint8_t>(1u << bit);
      CAPTURE(byte, bit);
      CHECK(payload_checksum(payload) != sum);
      payload[byte] ^= static_cast<uint8_t>(1u << bit);
    }
  }
  CHECK(payload_checksum(payload) == sum);
}

TEST_CASE("headers that break field rules are rejected even with a valid checksum", "[codec]") {
  RecordHeader h = sample(RecordType::kWrite);
  RecordHeader out;
  SECTION("type 0 is reserved") {
    h.type = RecordType::kNone;
  }
  SECTION("unknown type") {
    h.type = static_cast<RecordType>(9);
  }
  SECTION("unknown flag") {
    h.flags = 0x80;
  }
  SECTION("WRITE payload length differs from its length") {
    h.payload_length = 100;
  }
  SECTION("WRITE larger than the maximum payload") {
    h.length = h.payload_length = format::kMaxPayload + 1;
  }
  SECTION("ZERO with a payload") {
    h.type = RecordType::kZero;
    h.payload_length = 8;
  }
  SECTION("TRIM of zero bytes") {
    h.type = RecordType::kTrim;
    h.length = 0;
    h.payload_length = 0;
  }
  SECTION("MARK with an empty name") {
    h = sample(RecordType::kMark);
    h.payload_length = 0;
  }
  SECTION("MARK with a range") {
    h = sample(RecordType::kMark);
    h.length = 1;
  }
  SECTION("range that overflows") {
    h.offset = ~uint64_t{0} - 10;
  }
  EncodedHeader enc = encode_header(h);
  CHECK_FALSE(decode_header(enc.data(), &out).is_ok());
}

TEST_CASE("an all-zero header is recognised as unwritten space", "[codec]") {
  EncodedHeader zero{};
  CHECK(is_zero_header(zero.data()));
  RecordHeader out;
  CHECK_FALSE(decode_header(zero.data(), &out).is_ok());
  CHECK_FALSE(is_zero_header(encode_header(sample(RecordType::kZero)).data()));
}

TEST_CASE("a mark's payload holds its name and a group mark's group", "[codec]") {
  const MarkPayload plain{"before-upgrade", {}, {}};
  const MarkPayload group{"nightly", "0123456789abcdef", {"aa", "bb", "cc"}};
  for (const MarkPayload& p : {plain, group}) {
    const std::string text = encode_mark_payload(p);
    RecordHeader h;
    h.type = format::RecordType::kMark;
    h.payload_length = static_cast<uint32_t>(text.size());
    CHECK(mark_payload_of(h, reinterpret_cast<const uint8_t*>(text.data())) == p);
    CHECK(mark_name_of(h, reinterpret_cast<const uint8_t*>(text.data())) == p.name);
  }
  CHECK(encode_mark_payload(group) == "nightly\ngroup=0123456789abcdef volumes=aa,bb,cc");
  // Anything else after the newline: a plain mark with the name before it.
  const std::string odd = "m1\nsomething else";
  RecordHeader h;
  h.type = format::RecordType::kMark;
  h.payload_length = static_cast<uint32_t>(odd.size());
  CHECK(mark_payload_of(h, reinterpret_cast<const uint8_t*>(odd.data())) ==
        MarkPayload{"m1", {}, {}});
  h.payload_length = format::kMaxMarkPayload + 1;
  CHECK_FALSE(validate_header(h).is_ok());
  h.payload_length = format::kMaxMarkPayload;
  CHECK(validate_header(h).is_ok());
}
