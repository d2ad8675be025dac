// The network protocol's frames and messages (docs/PROTOCOL.md): every message
// round-trips, a stream cut anywhere reassembles, and malformed, oversized and
// truncated input is refused with an error that says what was wrong and where.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>

#include <fmt/format.h>

#include "rewind/format/record.h"
#include "rewind/ship/protocol.h"
#include "rewind/ship/ship_client.h"
#include "test_util.h"

using namespace rwd;
using namespace rwd::proto;

namespace {

Frame only_frame(const std::vector<uint8_t>& bytes) {
  FrameDecoder d;
  d.feed(bytes);
  Frame f;
  auto got = d.next(&f);
  INFO(got.status().message());
  REQUIRE(got.is_ok());
  REQUIRE(*got);
  CHECK(d.pending() == 0);
  return f;
}

// The error of the first frame of `bytes` (which must be one).
std::string frame_error(const std::vector<uint8_t>& bytes) {
  FrameDecoder d;
  d.feed(bytes);
  Frame f;
  auto got = d.next(&f);
  REQUIRE_FALSE(got.is_ok());
  // The decoder stays failed, whatever comes next.
  d.feed(encode_frame(MessageType::kAck, encode(Ack{})));
  CHECK_FALSE(d.next(&f).is_ok());
  return got.status().message();
}

// Records with consecutive seqs from `first`: WRITEs of `sizes` bytes and a ZERO.
struct TestRecords {
  std::vector<RecordHeader> headers;
  std::vector<std::vector<uint8_t>> data;
  std::vector<std::span<const uint8_t>> payloads;
  TestRecords(uint64_t first, std::initializer_list<uint32_t> sizes) {
    uint64_t seq = first;
    for (uint32_t n : sizes) {
      data.push_back(test::pattern(n, seq));
      RecordHeader h;
      h.type = format::RecordType::kWrite;
      h.seq = seq++;
      h.time_ns = 1000 + seq;
      h.offset = 4096 * seq;
      h.length = n;
      h.payload_length = n;
      h.payload_checksum = payload_checksum(data.back());
      headers.push_back(h);
    }
    RecordHeader z;
    z.type = format::RecordType::kZero;
    z.seq = seq;
    z.time_ns = 2000 + seq;
    z.length = 1 << 20;
    z.payload_checksum = payload_checksum({});
    headers.push_back(z);
    data.emplace_back();
    for (const auto& d : data) payloads.emplace_back(d);
  }
};

}  // namespace

TEST_CASE("every message round-trips through a frame", "[protocol]") {
  Hello hello{1, 1, Purpose::kRead, "db-01.vol_2", "s3cr3t-t0ken"};
  CHECK(decode_hello(only_frame(encode_frame(MessageType::kHello, encode(hello)))).value() ==
        hello);
  Welcome welcome;
  welcome.volume_id[3] = 7;
  welcome.image_size = 1 << 30;
  welcome.base_seq = 40;
  welcome.base_bytes = 1 << 20;
  welcome.durable_seq = 99;
  CHECK(decode_welcome(only_frame(encode_frame(MessageType::kWelcome, encode(welcome)))).value() ==
        welcome);
  Error error{ErrorCode::kGap, "records start at seq 12 but the server holds up to seq 9"};
  CHECK(decode_error(only_frame(encode_frame(MessageType::kError, encode(error)))).value() ==
        error);
  BaseBegin begin;
  begin.volume_id[0] = 1;
  begin.image_size = 8 << 20;
  begin.base_seq = 3;
  begin.base_time_ns = 123;
  begin.created_ns = 45;
  CHECK(
      decode_base_begin(only_frame(encode_frame(MessageType::kBaseBegin, encode(begin)))).value() ==
      begin);
  BaseZero zeroes{1 << 20, 3 << 20};
  CHECK(
      decode_base_zero(only_frame(encode_frame(MessageType::kBaseZero, encode(zeroes)))).value() ==
      zeroes);
  CHECK(decode_base_zero(only_frame(encode_frame(MessageType::kBaseZero, encode(BaseZero{5, 0}))))
            .status()
            .message()
            .find("an empty run") != std::string::npos);
  BaseData chunk{4096, test::pattern(5000, 1)};
  CHECK(decode_base_data(only_frame(encode_frame(MessageType::kBaseData, encode(chunk)))).value() ==
        chunk);
  Ack ack{77, 1 << 20};
  CHECK(decode_ack(only_frame(encode_frame(MessageType::kAck, encode(ack)))).value() == ack);
  Ping ping{5, 6};
  CHECK(decode_ping(only_frame(encode_frame(MessageType::kPong, encode(ping)))).value() == ping);

  TestRecords recs(10, {1, 4096, 13});
  auto f =
      only_frame(encode_frame(MessageType::kRecords, encode_records(recs.headers, recs.payloads)));
  auto got = decode_records(f);
  INFO(got.status().message());
  REQUIRE(got.is_ok());
  REQUIRE(got->headers.size() == recs.headers.size());
  for (size_t i = 0; i < recs.headers.size(); ++i) {
    CHECK(got->headers[i] == recs.headers[i]);
    CHECK(std::equal(got->payloads[i].begin(), got->payloads[i].end(), recs.data[i].begin(),
                     recs.data[i].end()));
  }
  // A decoder for one type refuses another's frame, naming both.
  auto wrong = decode_ack(f);
  REQUIRE_FALSE(wrong.is_ok());
  CHECK(wrong.status().message() == "expected a ACK message, got RECORDS");
}

TEST_CASE("a stream cut at any byte reassembles into the same frames", "[protocol]") {
  std::vector<uint8_t> stream;
  std::vector<std::vector<uint8_t>> sent;
  for (uint64_t i = 0; i < 6; ++i) {
    sent.push_back(encode(Ack{i, i * 2}));
    auto fr = encode_frame(MessageType::kAck, sent.back());
    stream.insert(stream.end(), fr.begin(), fr.end());
  }
  auto big = encode(BaseData{0, test::pattern(70000, 3)});
  auto fr = encode_frame(MessageType::kBaseData, big);
  stream.insert(stream.end(), fr.begin(), fr.end());
  sent.push_back(big);
  std::mt19937_64 rng(1);
  for (int round = 0; round < 50; ++round) {
    FrameDecoder d;
    std::vector<std::vector<uint8_t>> got;
    for (size_t at = 0; at < stream.size();) {
      const size_t n = std::min<size_t>(stream.size() - at, 1 + rng() % (round < 25 ? 7 : 9000));
      d.feed(std::span(stream.data() + at, n));
      at += n;
      Frame f;
      for (;;) {
        auto r = d.next(&f);
        REQUIRE(r.is_ok());
        if (!*r) break;
        got.push_back(f.payload);
      }
    }
    CHECK(got == sent);
    CHECK(d.pending() == 0);
  }
}

TEST_CASE("malformed, oversized and truncated frames are refused, naming what and where",
          "[protocol]") {
  const auto good = encode_frame(MessageType::kAck, encode(Ack{1, 2}));
  // Truncated: any prefix is only "more bytes needed", never a frame.
  for (size_t n = 0; n < good.size(); ++n) {
    FrameDecoder d;
    d.feed(std::span(good.data(), n));
    Frame f;
    auto r = d.next(&f);
    REQUIRE(r.is_ok());
    CHECK_FALSE(*r);
  }
  auto broken = [&](size_t at, uint8_t value) {
    auto b = good;
    b[at] = value;
    return b;
  };
  CHECK(frame_error(broken(0, 'X')) ==
        "frame at byte 0 of the stream: bad magic (not a rewind protocol peer?)");
  CHECK(frame_error(broken(4, 2)).find("frame version 2, expected 1") != std::string::npos);
  CHECK(frame_error(broken(5, 0)).find("unknown message type 0") != std::string::npos);
  CHECK(frame_error(broken(5, 200)).find("unknown message type 200") != std::string::npos);
  CHECK(frame_error(broken(7, 1)).find("reserved bytes are not zero") != std::string::npos);
  CHECK(frame_error(broken(13, 1)).find("reserved bytes are not zero") != std::string::npos);
  CHECK(frame_error(broken(30, good[30] ^ 1)).find("checksum mismatch") != std::string::npos);
  // Oversized: refused from the header alone, before the payload arrives.
  auto huge = good;
  put_u32(huge.data() + 8, kMaxPayload + 1);
  huge.resize(kHeaderSize);
  CHECK(frame_error(huge).find("over the limit") != std::string::npos);
  // The decoder tells the two kinds apart, so that the server answers TOO_LARGE or
  // MALFORMED without reading its own message.
  for (const auto& [bytes, kind] :
       {std::pair{huge, ErrorCode::kTooLarge}, std::pair{broken(0, 'X'), ErrorCode::kMalformed},
        std::pair{broken(30, good[30] ^ 1), ErrorCode::kMalformed}}) {
    FrameDecoder d;
    d.feed(bytes);
    Frame f;
    REQUIRE_FALSE(d.next(&f).is_ok());
    CHECK(d.failure() == kind);
  }
  // The position names the frame: the second one here.
  auto two = good;
  auto bad = broken(0, 'X');
  two.insert(two.end(), bad.begin(), bad.end());
  FrameDecoder d;
  d.feed(two);
  Frame f;
  REQUIRE(d.next(&f).value());
  auto r = d.next(&f);
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().message().find(fmt::format("byte {} of the stream", good.size())) !=
        std::string::npos);
}

TEST_CASE("malformed messages are refused, saying what is wrong", "[protocol]") {
  auto msg_error = [](MessageType t, std::vector<uint8_t> payload, auto decode) {
    auto r = decode(only_frame(encode_frame(t, payload)));
    REQUIRE_FALSE(r.is_ok());
    return r.status().message();
  };
  Hello hello{1, 1, Purpose::kShip, "vol", "tok"};
  auto hello_error = [&](Hello h) {
    return msg_error(MessageType::kHello, encode(h), decode_hello);
  };
  CHECK(hello_error(Hello{2, 1, Purpose::kShip, "vol", "tok"}).find("versions 2..1") !=
        std::string::npos);
  CHECK(hello_error(Hello{1, 1, Purpose::kShip, "", "tok"}).find("must be 1 to 64 bytes") !=
        std::string::npos);
  CHECK(hello_error(Hello{1, 1, Purpose::kShip, "../etc", "tok"}).find("not start with '.'") !=
        std::string::npos);
  CHECK(hello_error(Hello{1, 1, Purpose::kShip, "a/b", "tok"}).find("only letters") !=
        std::string::npos);
  CHECK(hello_error(Hello{1, 1, Purpose::kShip, "vol", "has space"}).find("without spaces") !=
        std::string::npos);
  CHECK(hello_error(Hello{1, 1, Purpose::kShip, "vol", ""}).find("1 to 256 bytes") !=
        std::string::npos);
  auto bad_purpose = encode(hello);
  bad_purpose[2] = 3;
  CHECK(msg_error(MessageType::kHello, bad_purpose, decode_hello).find("purpose 3") !=
        std::string::npos);
  auto cut = encode(hello);
  cut.pop_back();
  CHECK(msg_error(MessageType::kHello, cut, decode_hello) ==
        "malformed HELLO message: it ends early");
  auto longer = encode(hello);
  longer.push_back(0);
  CHECK(msg_error(MessageType::kHello, longer, decode_hello) ==
        "malformed HELLO message: bytes follow its last field");

  CHECK(msg_error(MessageType::kError, encode(Error{ErrorCode::kGap, "x"}), decode_ack)
            .find("expected a ACK") != std::string::npos);
  auto code0 = encode(Error{ErrorCode::kGap, "x"});
  code0[0] = 0;
  CHECK(msg_error(MessageType::kError, code0, decode_error).find("code 0") != std::string::npos);
  // An error's message comes back as one line.
  auto line = decode_error(
      only_frame(encode_frame(MessageType::kError, encode(Error{ErrorCode::kGap, "a\nb\rc"}))));
  REQUIRE(line.is_ok());
  CHECK(line->message == "a?b?c");

  CHECK(msg_error(MessageType::kBaseData, encode(BaseData{0, {}}), decode_base_data)
            .find("a chunk of 0 bytes") != std::string::npos);
  CHECK(msg_error(MessageType::kBaseData, encode(BaseData{UINT64_MAX - 1, test::pattern(16, 1)}),
                  decode_base_data)
            .find("overflows") != std::string::npos);
  BaseBegin odd;
  odd.image_size = 1000;
  CHECK(msg_error(MessageType::kBaseBegin, encode(odd), decode_base_begin)
            .find("not a positive multiple of 512") != std::string::npos);
  Welcome w;
  w.base_seq = 5;
  w.durable_seq = 4;
  CHECK(msg_error(MessageType::kWelcome, encode(w), decode_welcome).find("before base seq") !=
        std::string::npos);
}

TEST_CASE("a RECORDS message with a gap, a bad checksum or a short record is refused",
          "[protocol]") {
  TestRecords recs(10, {100, 8, 3000});
  auto payload = encode_records(recs.headers, recs.payloads);
  auto error_of = [](const std::vector<uint8_t>& p) {
    auto r = decode_records(only_frame(encode_frame(MessageType::kRecords, p)));
    REQUIRE_FALSE(r.is_ok());
    return r.status().message();
  };
  // The first seq the frame names is not the first record's.
  auto shifted = payload;
  put_u64(shifted.data(), 11);
  CHECK(error_of(shifted).find("record 0 has seq 10, expected 11") != std::string::npos);
  // A gap: the third record left out.
  TestRecords gap(10, {100, 8, 3000});
  std::vector<RecordHeader> hs{gap.headers[0], gap.headers[1], gap.headers[3]};
  std::vector<std::span<const uint8_t>> ps{gap.payloads[0], gap.payloads[1], gap.payloads[3]};
  CHECK(error_of(encode_records(hs, ps)).find("record 2 has seq 13, expected 12") !=
        std::string::npos);
  // Time going back.
  TestRecords back(10, {100, 8});
  back.headers[1].time_ns = 1;
  CHECK(error_of(encode_records(back.headers, back.payloads)).find("goes back in time") !=
        std::string::npos);
  // A flipped payload byte, a flipped header byte, a cut, a count the bytes cannot hold.
  auto flipped = payload;
  flipped[16 + format::kRecordHeaderSize + 5] ^= 1;
  CHECK(error_of(flipped).find("seq 10: payload checksum mismatch") != std::string::npos);
  auto header = payload;
  header[16 + 20] ^= 1;
  CHECK(error_of(header).find("record 0 at byte 16: record header checksum mismatch") !=
        std::string::npos);
  auto cut = payload;
  cut.resize(cut.size() - 100);
  CHECK(error_of(cut).find("cut short") != std::string::npos);
  auto many = payload;
  put_u32(many.data() + 8, 1u << 30);
  CHECK(error_of(many).find("1073741824 records in") != std::string::npos);
  auto none = payload;
  put_u32(none.data() + 8, 0);
  CHECK(error_of(none).find("no records") != std::string::npos);
  auto padded = payload;
  padded[16 + format::kRecordHeaderSize + 100] = 1;  // padding after the first payload
  CHECK(error_of(padded).find("seq 10: padding is not zero") != std::string::npos);
  // Seqs and times near 2^64, which would wrap around in the store.
  TestRecords high(kMaxSeq - 2, {8, 8});
  CHECK(error_of(encode_records(high.headers, high.payloads))
            .find("seq 4611686018427387902 and the 2 after it are not below") != std::string::npos);
  TestRecords late(10, {8});
  late.headers[0].time_ns = ~uint64_t{0};
  CHECK(error_of(encode_records(late.headers, late.payloads))
            .find("seq 10 has time 18446744073709551615 ns, not below") != std::string::npos);
}

TEST_CASE("a BASE_BEGIN with a seq, time or size near 2^64 is refused", "[protocol]") {
  BaseBegin begin;
  begin.image_size = 8 << 20;
  auto error_of = [](const BaseBegin& b) {
    auto r = decode_base_begin(only_frame(encode_frame(MessageType::kBaseBegin, encode(b))));
    REQUIRE_FALSE(r.is_ok());
    return r.status().message();
  };
  BaseBegin seq = begin;
  seq.base_seq = ~uint64_t{0};
  CHECK(error_of(seq).find("base seq 18446744073709551615 is not below") != std::string::npos);
  BaseBegin time = begin;
  time.created_ns = kMaxTimeNs;
  CHECK(error_of(time).find("a time is not below") != std::string::npos);
  BaseBegin size = begin;
  size.image_size = uint64_t{1} << 63;
  CHECK(error_of(size).find("positive multiple of 512 up to") != std::string::npos);
}

TEST_CASE("the read messages round-trip, and malformed ones are refused", "[protocol]") {
  auto frame = [](MessageType t, const std::vector<uint8_t>& p) {
    return only_frame(encode_frame(t, p));
  };
  CHECK(decode_info(frame(MessageType::kInfo, encode(InfoRequest{true}))).value() ==
        InfoRequest{true});
  auto scan2 = encode(InfoRequest{true});
  scan2[0] = 2;
  CHECK(decode_info(frame(MessageType::kInfo, scan2)).status().message().find("scan 2") !=
        std::string::npos);

  for (const Target& t : {Target::newest(), Target::at_seq(42),
                          Target::at_time(1795578340651022639ull, "2026-11-25T10:00:00Z"),
                          Target::at_mark("before-upgrade")}) {
    auto got = decode_restore(frame(MessageType::kRestore, encode(RestoreRequest{t})));
    INFO(got.status().message());
    REQUIRE(got.is_ok());
    CHECK(got->target.kind == t.kind);
    CHECK(got->target.seq == t.seq);
    CHECK(got->target.time_ns == t.time_ns);
    CHECK(got->target.mark == t.mark);
    CHECK(got->target.text == t.text);
  }
  auto kind9 = encode(RestoreRequest{Target::at_seq(1)});
  kind9[0] = 9;
  CHECK(decode_restore(frame(MessageType::kRestore, kind9))
            .status()
            .message()
            .find("target kind 9") != std::string::npos);
  CHECK(decode_restore(frame(MessageType::kRestore, encode(RestoreRequest{Target::at_mark("a b")})))
            .status()
            .message()
            .find("malformed RESTORE") == 0);

  ViewInfo view{12, 34, 1 << 20, 3, 8192, "the newest state"};
  CHECK(decode_view(frame(MessageType::kView, encode(view))).value() == view);
  view.image_size = 100;
  CHECK(decode_view(frame(MessageType::kView, encode(view)))
            .status()
            .message()
            .find("multiple of 512") != std::string::npos);

  Extent data{4096, false, 5000, test::pattern(5000, 2)};
  CHECK(decode_extent(frame(MessageType::kExtent, encode(data))).value() == data);
  Extent zero{0, true, 1ull << 40, {}};
  CHECK(decode_extent(frame(MessageType::kExtent, encode(zero))).value() == zero);
  CHECK(decode_extent(frame(MessageType::kExtent, encode(Extent{0, true, 0, {}})))
            .status()
            .message()
            .find("an empty run") != std::string::npos);
  CHECK(decode_extent(frame(MessageType::kExtent, encode(Extent{UINT64_MAX, true, 2, {}})))
            .status()
            .message()
            .find("overflows") != std::string::npos);
  CHECK(decode_extent(frame(MessageType::kExtent, encode(Extent{0, false, 0, {}})))
            .status()
            .message()
            .find("0 bytes of data") != std::string::npos);
  End end{1, 2};
  CHECK(decode_end(frame(MessageType::kEnd, encode(end))).value() == end);

  // A report carries the manifest as text and every count of every segment.
  JournalReport jr;
  jr.manifest.volume_id[0] = 9;
  jr.manifest.image_path = "/var/lib/a disk.img";
  jr.manifest.image_size = 1 << 20;
  jr.manifest.base_file = "00000000000000000000.img";
  jr.manifest.shipped_seq = 3;
  jr.manifest.segments.push_back(ManifestSegment{"00000000000000000001.seg", 1, false});
  jr.in_use = true;
  jr.base_bytes = 1 << 20;
  jr.base_allocated = 4096;
  SegmentReport sr;
  sr.file = "00000000000000000001.seg";
  sr.scanned = true;
  sr.first_seq = 1, sr.last_seq = 5, sr.records = 5, sr.bytes = 999, sr.writes = 2, sr.zeroes = 1;
  sr.trims = 1, sr.marks = 1, sr.flush_points = 3, sr.bytes_trimmed = 77, sr.granularity_ns = 6;
  sr.torn_tail = "offset 999: a record cut short";
  jr.segments.push_back(sr);
  jr.marks.push_back(MarkReport{"m1", 4, 1234, {}, {}});
  auto rep = decode_report(frame(MessageType::kReport, encode(Report{jr})));
  INFO(rep.status().message());
  REQUIRE(rep.is_ok());
  CHECK(rep->report.manifest == jr.manifest);
  CHECK(rep->report.in_use);
  CHECK(rep->report.base_allocated == 4096);
  REQUIRE(rep->report.segments.size() == 1);
  const SegmentReport& got = rep->report.segments[0];
  CHECK((got.file == sr.file && got.scanned && !got.sealed && got.last_seq == 5 &&
         got.bytes == 999 && got.marks == 1 && got.flush_points == 3 && got.bytes_trimmed == 77 &&
         got.granularity_ns == 6 && got.torn_tail == sr.torn_tail));
  REQUIRE(rep->report.marks.size() == 1);
  CHECK((rep->report.marks[0].name == "m1" && rep->report.marks[0].seq == 4));
  // A count of segments the payload cannot hold is refused before anything is read.
  auto lying = encode(Report{jr});
  const size_t at = 4 + jr.manifest.serialize().size() + 1 + 8 + 8;  // the segment count
  lying[at + 3] = 0x7f;
  CHECK(decode_report(frame(MessageType::kReport, lying)).status().message().find("segments in") !=
        std::string::npos);
}

TEST_CASE("rewind:// URIs name a server and a volume", "[protocol]") {
  ShipOptions o;
  REQUIRE(parse_remote_uri("rewind://logs.example:7500/db-1", &o).is_ok());
  CHECK((o.host == "logs.example" && o.port == 7500 && o.volume == "db-1"));
  REQUIRE(parse_remote_uri("rewind://[::1]/v", &o).is_ok());
  CHECK((o.host == "::1" && o.port == 7420 && o.volume == "v"));
  REQUIRE(parse_remote_uri("rewind://[::1]:9/v", &o).is_ok());
  CHECK((o.host == "::1" && o.port == 9));
  for (const char* bad : {"nbd://h/v", "rewind://h", "rewind://h:0/v", "rewind://h:x/v",
                          "rewind://:7/v", "rewind://h/../v", "rewind://h/"}) {
    Status st = parse_remote_uri(bad, &o);
    INFO(bad);
    CHECK_FALSE(st.is_ok());
    CHECK(st.message().find("give rewind://HOST[:PORT]/VOLUME") != std::string::npos);
  }
}
