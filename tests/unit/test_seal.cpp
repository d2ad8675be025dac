// Sealed records (seal.h): key files, round trips of every record type and size with
// and without compression, and refusals: a flipped bit anywhere, a changed header
// field, a record moved to another seq or volume, a wrong key.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <random>

#include "rewind/format/payload_codec.h"
#include "rewind/format/record.h"
#include "rewind/format/seal.h"
#include "rewind/format/segment.h"
#include "test_util.h"

using namespace rwd;
using format::Codec;
using format::RecordType;

namespace {

SealKey test_key(test::TempDir& dir, const std::string& name) {
  auto k = generate_key_file(dir / name);
  REQUIRE(k.is_ok());
  return *k;
}

struct Plain {
  RecordHeader header;
  std::vector<uint8_t> body;  // the unsealed payload
};

// Records of every type: WRITEs of several sizes as is and compressed, ZERO, TRIM, a
// MARK, superseded and compacted ones.
std::vector<Plain> every_kind() {
  std::vector<Plain> out;
  uint64_t seq = 1;
  auto add = [&](RecordType t, uint8_t flags, uint64_t length, std::vector<uint8_t> body,
                 Codec codec = Codec::kNone) {
    Plain p;
    p.header.type = t;
    p.header.flags = flags;
    p.header.seq = seq++;
    p.header.time_ns = 1'000'000 + seq;
    p.header.offset = t == RecordType::kMark ? 0 : 4096 * seq;
    p.header.length = length;
    p.header.codec = codec;
    p.header.payload_length = static_cast<uint32_t>(body.size());
    p.header.payload_checksum = payload_checksum(body);
    p.body = std::move(body);
    out.push_back(std::move(p));
  };
  PayloadEncoder enc(Compression{Codec::kZstd, 1});
  for (uint64_t n :
       {uint64_t{1}, uint64_t{511}, uint64_t{4096}, uint64_t{65536 + 7}, uint64_t{1} << 20}) {
    add(RecordType::kWrite, format::kFlagBatchStart, n, test::pattern(n, n));
    const auto c = test::compressible(n, n);
    std::vector<uint8_t> stored;
    if (enc.encode(c, &stored)) add(RecordType::kWrite, 0, n, stored, Codec::kZstd);
  }
  add(RecordType::kZero, format::kFlagFlushPoint, 8192, {});
  add(RecordType::kTrim, 0, 1 << 20, {});
  const std::string name = "before-upgrade";
  add(RecordType::kMark, format::kFlagFlushPoint, 0, {name.begin(), name.end()});
  std::vector<uint8_t> covered(8);
  put_u64(covered.data(), 99);
  add(RecordType::kWrite, format::kFlagSuperseded, 4096, covered);
  add(RecordType::kWrite, format::kFlagCompacted, 4096, test::pattern(4096, 5));
  add(RecordType::kZero, format::kFlagSuperseded | format::kFlagCompacted, 4096, covered);
  return out;
}

struct Sealed {
  RecordHeader header;
  std::vector<uint8_t> stored;
};
Sealed seal(const SealKey& k, const VolumeId& v, const Plain& p) {
  Sealed s{p.header, {}};
  seal_record(k, v, &s.header, p.body, &s.stored);
  return s;
}

}  // namespace

TEST_CASE("a key file is private, read back whole, and refused when others may read it", "[seal]") {
  test::TempDir dir;
  const std::string path = dir / "volume.key";
  auto made = generate_key_file(path);
  REQUIRE(made.is_ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto read = load_key_file(path);
  REQUIRE(read.is_ok());
  CHECK(read->key == made->key);
  CHECK(read->id == made->id);
  // The file names the key's id, never its bytes in any other form.
  const auto text = test::read_file(path);
  CHECK(std::string(text.begin(), text.end()).find(key_id_hex(made->id)) != std::string::npos);

  SECTION("a second keygen never replaces a key") {
    auto again = generate_key_file(path);
    CHECK_FALSE(again.is_ok());
    auto still = load_key_file(path);
    REQUIRE(still.is_ok());
    CHECK(still->key == made->key);
  }
  SECTION("two keys differ, and so do their ids") {
    auto other = generate_key_file(dir / "other.key");
    REQUIRE(other.is_ok());
    CHECK(other->key != made->key);
    CHECK(other->id != made->id);
  }
  SECTION("readable by others") {
    REQUIRE(::chmod(path.c_str(), 0640) == 0);
    auto r = load_key_file(path);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().message().find("chmod 600") != std::string::npos);
  }
  SECTION("not a key") {
    const std::string bad = dir / "bad.key";
    test::write_file(bad, {'h', 'e', 'l', 'l', 'o', '\n'});
    REQUIRE(::chmod(bad.c_str(), 0600) == 0);
    auto r = load_key_file(bad);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().message().find("rewind keygen") != std::string::npos);
    // One hex digit short.
    std::string line = "rewind-key-v1 " + std::string(63, 'a') + "\n";
    test::write_file(bad, {line.begin(), line.end()});
    CHECK_FALSE(load_key_file(bad).is_ok());
    CHECK_FALSE(load_key_file(dir.path()).is_ok());
    CHECK_FALSE(load_key_file(dir / "absent.key").is_ok());
  }
}

TEST_CASE("sealed records of every type and size open to what was sealed", "[seal]") {
  test::TempDir dir;
  const SealKey k = test_key(dir, "k");
  const Keyring ring({k});
  const VolumeId v = random_volume_id();
  for (const Plain& p : every_kind()) {
    CAPTURE(p.header.seq, record_type_name(p.header.type), p.body.size());
    const Sealed s = seal(k, v, p);
    CHECK(s.header.seal == format::Seal::kXChaCha20Poly1305);
    CHECK(s.stored.size() == p.body.size() + format::kSealTrailerSize);
    REQUIRE(validate_header(s.header).is_ok());
    // The header round-trips through its encoding.
    RecordHeader back;
    REQUIRE(decode_header(encode_header(s.header).data(), &back).is_ok());
    CHECK(back == s.header);
    std::vector<uint8_t> body;
    RecordHeader unsealed;
    Status st = open_record(ring, v, back, s.stored, &body, &unsealed);
    INFO(st.message());
    REQUIRE(st.is_ok());
    CHECK(body == p.body);
    CHECK(unsealed == p.header);
    // A WRITE's data is not in the stored bytes; a mark's name is, by design.
    if (p.header.type == RecordType::kWrite && !(p.header.flags & format::kFlagSuperseded) &&
        p.body.size() >= 16)
      CHECK(std::search(s.stored.begin(), s.stored.end(), p.body.begin(), p.body.begin() + 16) ==
            s.stored.end());
  }
}

TEST_CASE("sealing the same record twice gives different bytes (a fresh nonce each time)",
          "[seal]") {
  test::TempDir dir;
  const SealKey k = test_key(dir, "k");
  const VolumeId v = random_volume_id();
  const Plain p = every_kind()[2];
  const Sealed a = seal(k, v, p), b = seal(k, v, p);
  CHECK(a.stored != b.stored);
}

TEST_CASE("a flipped bit anywhere in a sealed record's payload fails to open", "[seal][errors]") {
  test::TempDir dir;
  const SealKey k = test_key(dir, "k");
  const Keyring ring({k});
  const VolumeId v = random_volume_id();
  std::mt19937_64 rng(3);
  for (const Plain& p : every_kind()) {
    if (p.body.size() > 70000) continue;  // every byte of the small ones is enough
    const Sealed s = seal(k, v, p);
    CAPTURE(p.header.seq, record_type_name(p.header.type));
    for (size_t at = 0; at < s.stored.size(); at += 1 + s.stored.size() / 300) {
      Sealed bad = s;
      bad.stored[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
      std::vector<uint8_t> body;
      RecordHeader u;
      Status st = open_record(ring, v, bad.header, bad.stored, &body, &u);
      CAPTURE(at);
      CHECK_FALSE(st.is_ok());
      // Damage to the key id names a key nobody gave; anywhere else, an authentication
      // failure.
      const bool in_key_id = at >= p.body.size() && at < p.body.size() + format::kSealKeyIdSize;
      CHECK(st.code() == (in_key_id ? Status::Code::kInvalidArgument : Status::Code::kCorruption));
    }
  }
}

TEST_CASE("a changed header field, another seq or another volume fails to open", "[seal][errors]") {
  test::TempDir dir;
  const SealKey k = test_key(dir, "k");
  const Keyring ring({k});
  const VolumeId v = random_volume_id();
  for (const Plain& p : every_kind()) {
    const Sealed s = seal(k, v, p);
    CAPTURE(p.header.seq, record_type_name(p.header.type));
    auto opens = [&](const RecordHeader& h, const VolumeId& vol) {
      std::vector<uint8_t> body;
      RecordHeader u;
      return open_record(ring, vol, h, s.stored, &body, &u).is_ok();
    };
    REQUIRE(opens(s.header, v));
    VolumeId other = v;
    other[0] ^= 1;
    CHECK_FALSE(opens(s.header, other));
    RecordHeader h = s.header;
    h.seq += 1;
    CHECK_FALSE(opens(h, v));
    h = s.header;
    h.time_ns += 1;
    CHECK_FALSE(opens(h, v));
    h = s.header;
    h.offset += 4096;
    CHECK_FALSE(opens(h, v));
    h = s.header;
    h.length += 1;
    CHECK_FALSE(opens(h, v));
    h = s.header;
    h.flags ^= format::kFlagFlushPoint;
    CHECK_FALSE(opens(h, v));
    h = s.header;
    h.type = h.type == RecordType::kZero ? RecordType::kTrim : RecordType::kZero;
    CHECK_FALSE(opens(h, v));
    // The batch-start flag is a hint to local recovery, which a store sets anew.
    h = s.header;
    h.flags ^= format::kFlagBatchStart;
    CHECK(opens(h, v));
  }
}

TEST_CASE("a record sealed with another key is refused naming both keys, and rotation opens both",
          "[seal][errors]") {
  test::TempDir dir;
  const SealKey old_key = test_key(dir, "old"), new_key = test_key(dir, "new");
  const VolumeId v = random_volume_id();
  const Plain p = every_kind()[0];
  const Sealed by_old = seal(old_key, v, p), by_new = seal(new_key, v, p);
  std::vector<uint8_t> body;
  RecordHeader u;
  Status st = open_record(Keyring({new_key}), v, by_old.header, by_old.stored, &body, &u);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.code() == Status::Code::kInvalidArgument);
  CHECK(st.message().find(key_id_hex(old_key.id)) != std::string::npos);
  CHECK(st.message().find(key_id_hex(new_key.id)) != std::string::npos);
  CHECK_FALSE(open_record(Keyring(), v, by_old.header, by_old.stored, &body, &u).is_ok());
  // A key with the old one's id but other bytes (a forged key file) fails to open.
  SealKey forged = new_key;
  forged.id = old_key.id;
  st = open_record(Keyring({forged}), v, by_old.header, by_old.stored, &body, &u);
  CHECK(st.code() == Status::Code::kCorruption);
  const Keyring both({new_key, old_key});
  CHECK(open_record(both, v, by_old.header, by_old.stored, &body, &u).is_ok());
  CHECK(body == p.body);
  CHECK(open_record(both, v, by_new.header, by_new.stored, &body, &u).is_ok());
  CHECK(body == p.body);
}

TEST_CASE("a seal is valid only with room for its trailer and a body the type allows",
          "[seal][record]") {
  RecordHeader h;
  h.type = RecordType::kZero;
  h.seq = 1;
  h.offset = 0;
  h.length = 4096;
  h.seal = format::Seal::kXChaCha20Poly1305;
  h.payload_length = format::kSealTrailerSize;
  CHECK(validate_header(h).is_ok());
  h.payload_length = format::kSealTrailerSize - 1;
  CHECK_FALSE(validate_header(h).is_ok());
  h.payload_length = format::kSealTrailerSize + 8;  // a ZERO has no body
  CHECK_FALSE(validate_header(h).is_ok());
  h.payload_length = format::kSealTrailerSize;
  h.seal = static_cast<format::Seal>(2);
  CHECK_FALSE(validate_header(h).is_ok());
  h.seal = format::Seal::kXChaCha20Poly1305;
  h.type = RecordType::kWrite;
  h.payload_length = format::kSealTrailerSize + 4096;
  CHECK(validate_header(h).is_ok());
  h.payload_length = format::kSealTrailerSize + 4095;
  CHECK_FALSE(validate_header(h).is_ok());
}

TEST_CASE("the segment reader opens sealed records with their key, and only with it",
          "[seal][segment]") {
  test::TempDir dir;
  const SealKey k = test_key(dir, "k");
  const SealKey other = test_key(dir, "other");
  const std::string path = dir / "1.seg";
  const VolumeId v = random_volume_id();
  const auto plains = every_kind();
  std::vector<Sealed> sealed;
  for (const Plain& p : plains) sealed.push_back(seal(k, v, p));
  {
    auto w = SegmentWriter::create(path, SegmentHeader{v, 1, 1}, 0);
    REQUIRE(w.is_ok());
    for (const Sealed& s : sealed) {
      const EncodedHeader hb = encode_header(s.header);
      const RecordRef ref{hb.data(), s.stored};
      REQUIRE(w->append(std::span(&ref, 1)).is_ok());
    }
    REQUIRE(w->seal().is_ok());
  }
  const Keyring ring({k});
  {
    auto r = SegmentReader::open(path, true);
    REQUIRE(r.is_ok());
    r->set_keys(&ring);
    RecordView rv;
    for (size_t i = 0; i < plains.size(); ++i) {
      CAPTURE(i);
      auto more = r->next(&rv);
      INFO((more.is_ok() ? "" : more.status().message()));
      REQUIRE(more.is_ok());
      REQUIRE(*more);
      CHECK(rv.header == sealed[i].header);
      CHECK(std::equal(rv.stored.begin(), rv.stored.end(), sealed[i].stored.begin(),
                       sealed[i].stored.end()));
      // The payload is the record's unsealed and decoded one.
      std::vector<uint8_t> want = plains[i].body;
      if (plains[i].header.codec != Codec::kNone) {
        want.resize(plains[i].header.length);
        REQUIRE(decode_payload(plains[i].header.codec, plains[i].body, want).is_ok());
      }
      CHECK(std::equal(rv.payload.begin(), rv.payload.end(), want.begin(), want.end()));
    }
    CHECK_FALSE(*r->next(&rv));
  }
  SECTION("without a key: one error naming the segment, the seq and the key") {
    auto r = SegmentReader::open(path, true);
    REQUIRE(r.is_ok());
    RecordView rv;
    auto more = r->next(&rv);
    REQUIRE_FALSE(more.is_ok());
    CHECK(more.status().message().find("seq 1") != std::string::npos);
    CHECK(more.status().message().find(key_id_hex(k.id)) != std::string::npos);
    CHECK(more.status().message().find("--key") != std::string::npos);
  }
  SECTION("with the wrong key") {
    const Keyring wrong({other});
    auto r = SegmentReader::open(path, true);
    REQUIRE(r.is_ok());
    r->set_keys(&wrong);
    RecordView rv;
    auto more = r->next(&rv);
    REQUIRE_FALSE(more.is_ok());
    CHECK(more.status().code() == Status::Code::kInvalidArgument);
  }
  SECTION("kept sealed: every record, stored bytes only") {
    auto r = SegmentReader::open(path, true);
    REQUIRE(r.is_ok());
    r->keep_sealed();
    RecordView rv;
    size_t n = 0;
    for (;;) {
      auto more = r->next(&rv);
      REQUIRE(more.is_ok());
      if (!*more) break;
      CHECK(rv.payload.empty());
      CHECK(rv.stored.size() == sealed[n].stored.size());
      ++n;
    }
    CHECK(n == plains.size());
  }
  SECTION("a record moved to another volume's segment fails to open, named") {
    // Rewrite the segment header with another volume id: every record is now foreign.
    const std::string moved = dir / "moved.seg";
    {
      VolumeId w = v;
      w[15] ^= 0x80;
      auto out = SegmentWriter::create(moved, SegmentHeader{w, 1, 1}, 0);
      REQUIRE(out.is_ok());
      const EncodedHeader hb = encode_header(sealed[0].header);
      const RecordRef ref{hb.data(), sealed[0].stored};
      REQUIRE(out->append(std::span(&ref, 1)).is_ok());
      REQUIRE(out->seal().is_ok());
    }
    auto r = SegmentReader::open(moved, true);
    REQUIRE(r.is_ok());
    r->set_keys(&ring);
    RecordView rv;
    auto more = r->next(&rv);
    REQUIRE_FALSE(more.is_ok());
    CHECK(more.status().code() == Status::Code::kCorruption);
    CHECK(more.status().message().find("moved.seg offset 64 seq 1") != std::string::npos);
    CHECK(more.status().message().find("authenticate") != std::string::npos);
  }
}

TEST_CASE("sealed base chunks open to their bytes, and only in their place", "[seal]") {
  test::TempDir dir;
  const SealKey k = test_key(dir, "k");
  const Keyring ring({k});
  const VolumeId v = random_volume_id();
  PayloadEncoder enc(Compression{Codec::kZstd, 1});
  const std::vector<std::vector<uint8_t>> chunks = {
      std::vector<uint8_t>(kSealedChunkBytes, 0), test::pattern(kSealedChunkBytes, 1),
      test::compressible(kSealedChunkBytes, 2), test::pattern(4096 * 3, 3)};  // a short last
  for (size_t i = 0; i < chunks.size(); ++i) {
    CAPTURE(i);
    std::vector<uint8_t> slot, again;
    seal_base_chunk(k, v, 7, i, chunks[i], &enc, &slot);
    CHECK(slot.size() <= kSealedSlotBytes);
    // Deterministic: a chunk sent again seals to the same bytes.
    seal_base_chunk(k, v, 7, i, chunks[i], &enc, &again);
    CHECK(slot == again);
    const size_t used = slot.size();
    slot.resize(kSealedSlotBytes);  // the rest of the slot reads as zeroes
    std::vector<uint8_t> out(chunks[i].size());
    REQUIRE(open_base_chunk(ring, v, 7, i, slot, out).is_ok());
    CHECK(out == chunks[i]);
    // Another place, base or volume fails to open.
    CHECK_FALSE(open_base_chunk(ring, v, 7, i + 1, slot, out).is_ok());
    CHECK_FALSE(open_base_chunk(ring, v, 8, i, slot, out).is_ok());
    VolumeId w = v;
    w[3] ^= 1;
    CHECK_FALSE(open_base_chunk(ring, w, 7, i, slot, out).is_ok());
    // A flipped bit in the used bytes, and an emptied slot.
    for (size_t at = 0; at < used; at += 1 + at / 4) {
      auto bad = slot;
      bad[at] ^= 0x10;
      CHECK_FALSE(open_base_chunk(ring, v, 7, i, bad, out).is_ok());
    }
    std::vector<uint8_t> empty(kSealedSlotBytes, 0);
    Status st = open_base_chunk(ring, v, 7, i, empty, out);
    CHECK(st.code() == Status::Code::kCorruption);
    CHECK(st.message().find("holds no seal") != std::string::npos);
  }
  // A zero chunk takes 56 bytes of its slot; the sealed base is slots of 1 MiB + 4 KiB.
  std::vector<uint8_t> zero;
  seal_base_chunk(k, v, 7, 0, chunks[0], &enc, &zero);
  CHECK(zero.size() == kSealedSlotHeader + format::kSealTrailerSize);
  CHECK(sealed_base_size(3 * kSealedChunkBytes + 512) == 4 * kSealedSlotBytes);
}
