// The server's side of shipping without the network: the token file, and a store
// that receives a volume's base snapshot and records (resends skipped, gaps refused)
// into a journal directory from which every point restores as in the original, and
// that keeps everything it acknowledged through a power cut.
#include <catch2/catch.hpp>

#include <algorithm>

#include <filesystem>
#include <functional>

#include "../support/fault_fs.h"
#include "random_history.h"
#include "rewind/format/segment.h"
#include "rewind/replay/restore.h"
#include "rewind/replay/view.h"
#include "rewind/ship/protocol.h"
#include "rewind/ship/ship_client.h"
#include "rewind/ship/store.h"
#include "rewind/ship/tokens.h"
#include "test_util.h"

using namespace rwd;
using test::RandomHistory;

TEST_CASE("the token file grants volumes to tokens, read-only with r:", "[store][tokens]") {
  auto t = TokenTable::parse(
      "# hosts\n"
      "tok-a  vol-a r:shared\n"
      "\n"
      "tok-b\tvol-b shared r:vol-b\r\n",
      "tokens.txt");
  INFO(t.status().message());
  REQUIRE(t.is_ok());
  CHECK(t->size() == 2);
  using A = TokenTable::Access;
  CHECK(t->access("tok-a", "vol-a") == A::kWrite);
  CHECK(t->access("tok-a", "shared") == A::kRead);
  CHECK(t->access("tok-a", "vol-b") == A::kNone);
  CHECK(t->access("tok-b", "vol-b") == A::kWrite);  // VOLUME and r:VOLUME: the larger grant
  CHECK(t->access("tok-b", "shared") == A::kWrite);
  CHECK(t->access("tok-c", "vol-a") == A::kNone);
  CHECK(t->access("", "vol-a") == A::kNone);

  auto error = [](const char* text) {
    auto r = TokenTable::parse(text, "tokens.txt");
    REQUIRE_FALSE(r.is_ok());
    return r.status().message();
  };
  CHECK(error("ok a\nlonely\n").find("tokens.txt:2: a token without volumes") == 0);
  CHECK(error("a v\na w\n").find("tokens.txt:2: the token is listed twice") == 0);
  CHECK(error("a ../up\n").find("tokens.txt:1: volume name '../up'") == 0);
  CHECK(error("a r:\n").find("tokens.txt:1: volume name ''") == 0);
  CHECK(error("t\x01k v\n").find("not printable ASCII") != std::string::npos);
  CHECK(error(("a v\n" + std::string(300, 'x') + " v\n").c_str()).find("a token of 300 bytes") !=
        std::string::npos);
}

TEST_CASE("the token file takes hashed tokens and quotas", "[store][tokens]") {
  // sha256("tok-h"), as `rewind-server --hash-token` prints it.
  const std::string hashed = TokenTable::hashed_form("tok-h");
  CHECK(hashed.size() == 7 + 64);
  CHECK(hashed.starts_with("sha256:"));
  auto t = TokenTable::parse(hashed + " vol-h@64M r:shared\ntok-c vol-c\n", "tokens.txt");
  INFO(t.status().message());
  REQUIRE(t.is_ok());
  using A = TokenTable::Access;
  CHECK(t->access("tok-h", "vol-h") == A::kWrite);
  CHECK(t->grant("tok-h", "vol-h").quota == (64u << 20));
  CHECK(t->access("tok-h", "shared") == A::kRead);
  CHECK(t->grant("tok-c", "vol-c").quota == 0);
  // The hashed form itself is not a token.
  CHECK(t->access(hashed, "vol-h") == A::kNone);
  CHECK(t->access("tok-H", "vol-h") == A::kNone);

  auto error = [](const std::string& text) {
    auto r = TokenTable::parse(text, "tokens.txt");
    REQUIRE_FALSE(r.is_ok());
    // An error never quotes the token.
    CHECK(r.status().message().find("s3cret") == std::string::npos);
    return r.status().message();
  };
  CHECK(error("sha256:abc v\n").find("tokens.txt:1: a hashed token is sha256: and 64") == 0);
  CHECK(error("s3cret r:v@1G\n").find("a quota is for a volume the token ships") !=
        std::string::npos);
  CHECK(error("s3cret v@lots\n").find("quota 'lots' of volume 'v'") != std::string::npos);
  CHECK(error("s3cret v\n" + TokenTable::hashed_form("s3cret") + " w\n")
            .find("tokens.txt:2: the token is listed twice") == 0);
}

namespace {

struct ShippedRecord {
  RecordHeader header;
  std::vector<uint8_t> payload;
};

// Every record of a (stopped) journal, read back from its segments as they are stored
// (and shipped).
std::vector<ShippedRecord> read_records(const std::string& journal) {
  auto m = Manifest::load(journal);
  REQUIRE(m.is_ok());
  std::vector<ShippedRecord> out;
  for (const ManifestSegment& seg : m->segments) {
    auto r = SegmentReader::open(segment_path(journal, seg.file), seg.sealed);
    REQUIRE(r.is_ok());
    RecordView rec;
    while (r->next(&rec).value())
      out.push_back({rec.header, std::vector<uint8_t>(rec.stored.begin(), rec.stored.end())});
  }
  return out;
}

// The RECORDS message of records [from, to) of `all`, as the server decodes it.
struct RecordsFrame {
  proto::Frame frame;
  proto::Records records;
  RecordsFrame(const std::vector<ShippedRecord>& all, size_t from, size_t to) {
    std::vector<RecordHeader> hs;
    std::vector<std::span<const uint8_t>> ps;
    for (size_t i = from; i < to; ++i) {
      hs.push_back(all[i].header);
      ps.emplace_back(all[i].payload);
    }
    frame.type = proto::MessageType::kRecords;
    frame.payload = proto::encode_records(hs, ps);
    auto r = proto::decode_records(frame);
    REQUIRE(r.is_ok());
    records = std::move(*r);
  }
};

proto::BaseBegin base_begin_of(const std::string& journal) {
  auto m = Manifest::load(journal);
  REQUIRE(m.is_ok());
  return rwd::base_begin_of(*m);
}

std::vector<uint8_t> base_of(const std::string& journal) {
  auto m = Manifest::load(journal);
  REQUIRE(m.is_ok());
  return test::read_file(base_path(journal, m->base_file));
}

// Every seq of the store restores as the reference, and verify passes.
void check_store(const RandomHistory& h, const std::string& volume_dir, uint64_t upto) {
  auto loaded = JournalHistory::load(volume_dir, false, {});
  INFO(loaded.status().message());
  REQUIRE(loaded.is_ok());
  auto history = std::make_shared<const JournalHistory>(std::move(*loaded));
  REQUIRE(history->last_seq() == upto);
  for (uint64_t s = 0; s <= upto; ++s) {
    CAPTURE(s);
    auto view = JournalView::open(history, s);
    REQUIRE(view.is_ok());
    std::vector<uint8_t> got((*view)->size());
    REQUIRE((*view)->read(got, 0).is_ok());
    CHECK(got == h.states[s]);
  }
  for (const auto& [name, seq] : h.marks) {
    if (seq > upto) continue;
    CAPTURE(name);
    std::string note;
    auto r = history->resolve(Target::at_mark(name), &note);
    REQUIRE(r.is_ok());
    CHECK(*r == seq);
  }
  VerifyReport report;
  Status verified = verify_journal(volume_dir, "", &report, {});
  INFO(verified.message());
  CHECK(verified.is_ok());
}

}  // namespace

TEST_CASE("a store receives a volume in pieces, skips resends, refuses gaps, and restores it",
          "[store]") {
  RandomHistory h(31, 120, 20);
  const uint64_t last = h.states.size() - 1;
  test::TempDir store;
  const auto all = read_records(h.journal);
  REQUIRE(all.size() == last);
  const auto base = base_of(h.journal);
  const auto begin = base_begin_of(h.journal);

  {
    auto v = StoredVolume::open(store.path(), "vol-1", true, {});
    INFO(v.status().message());
    REQUIRE(v.is_ok());
    CHECK((*v)->state() == proto::Welcome{});
    // Records before the base is whole are refused.
    auto early = (*v)->append(RecordsFrame(all, 0, 2).records);
    REQUIRE_FALSE(early.is_ok());
    CHECK((*v)->last_error() == proto::ErrorCode::kMalformed);
    REQUIRE((*v)->begin_base(begin).is_ok());
    // Half the base, then a gap, then a resend that overlaps, then the rest.
    const size_t half = base.size() / 2;
    auto a = (*v)->base_data(0, std::span(base).first(half));
    REQUIRE(a.is_ok());
    CHECK(a->base_bytes == half);
    auto gap = (*v)->base_data(half + 512, std::span(base).subspan(half + 512, 512));
    REQUIRE_FALSE(gap.is_ok());
    CHECK((*v)->last_error() == proto::ErrorCode::kGap);
    CHECK(gap.status().message().find(fmt::format("holds the first {} bytes", half)) !=
          std::string::npos);
    CHECK((*v)->state().base_bytes == half);
  }
  {
    // After a restart the store goes on from what it holds.
    auto v = StoredVolume::open(store.path(), "vol-1", false, {});
    REQUIRE(v.is_ok());
    CHECK((*v)->state().base_bytes == base.size() / 2);
    REQUIRE((*v)->begin_base(begin).is_ok());  // the same base again: goes on
    CHECK((*v)->state().base_bytes == base.size() / 2);
    const size_t from = base.size() / 2 - 100;  // overlaps what it holds
    auto done = (*v)->base_data(from, std::span(base).subspan(from));
    REQUIRE(done.is_ok());
    CHECK(done->base_bytes == base.size());
    CHECK((*v)->has_base());
    // Records in batches, with a resend of some already held and a gap.
    REQUIRE((*v)->append(RecordsFrame(all, 0, 30).records).is_ok());
    auto resent = (*v)->append(RecordsFrame(all, 20, 50).records);
    REQUIRE(resent.is_ok());
    CHECK(resent->durable_seq == 50);
    auto gapped = (*v)->append(RecordsFrame(all, 60, 70).records);
    REQUIRE_FALSE(gapped.is_ok());
    CHECK((*v)->last_error() == proto::ErrorCode::kGap);
    CHECK(gapped.status().message().find("send from seq 51") != std::string::npos);
    // A second base is refused once one is whole.
    auto again = (*v)->begin_base(begin);
    REQUIRE_FALSE(again.is_ok());
    CHECK((*v)->last_error() == proto::ErrorCode::kConflict);
  }
  {
    auto v = StoredVolume::open(store.path(), "vol-1", false, {});
    REQUIRE(v.is_ok());
    CHECK((*v)->state().durable_seq == 50);
    REQUIRE((*v)->append(RecordsFrame(all, 50, all.size()).records).is_ok());
    CHECK((*v)->state().durable_seq == last);
    // Held by this process: a second opener is refused.
    auto busy = StoredVolume::open(store.path(), "vol-1", false, {});
    REQUIRE_FALSE(busy.is_ok());
    CHECK(busy.status().code() == Status::Code::kBusy);
  }
  check_store(h, store / "vol-1", last);
  // A volume it does not have, and names that are not volume names.
  CHECK(StoredVolume::open(store.path(), "vol-2", false, {}).status().code() ==
        Status::Code::kNotFound);
  CHECK_FALSE(StoredVolume::open(store.path(), "../escape", true, {}).is_ok());
}

TEST_CASE("a store keeps compressed records as they come and restores them", "[store][codec]") {
  RandomHistory h(34, 120, 20, 0, false, Compression{format::Codec::kZstd, 1});
  const uint64_t last = h.states.size() - 1;
  test::TempDir store;
  const auto all = read_records(h.journal);
  const size_t encoded =
      static_cast<size_t>(std::count_if(all.begin(), all.end(), [](const auto& r) {
        return r.header.codec == format::Codec::kZstd;
      }));
  CHECK(encoded > 10);
  {
    auto v = StoredVolume::open(store.path(), "vol-1", true, {});
    REQUIRE(v.is_ok());
    REQUIRE((*v)->begin_base(base_begin_of(h.journal)).is_ok());
    REQUIRE((*v)->base_data(0, base_of(h.journal)).is_ok());
    REQUIRE((*v)->append(RecordsFrame(all, 0, all.size()).records).is_ok());
  }
  // Stored as they came: the same bytes, compressed where the volume's were.
  const auto stored = read_records(store / "vol-1");
  REQUIRE(stored.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    CAPTURE(i);
    CHECK(stored[i].header.codec == all[i].header.codec);
    CHECK(stored[i].header.payload_checksum == all[i].header.payload_checksum);
    CHECK(stored[i].payload == all[i].payload);
  }
  check_store(h, store / "vol-1", last);
}

TEST_CASE("a store refuses records that would make its journal unreadable", "[store]") {
  RandomHistory h(32, 30, 10);
  test::TempDir store;
  auto all = read_records(h.journal);
  const auto base = base_of(h.journal);
  auto v = StoredVolume::open(store.path(), "v", true, {});
  REQUIRE(v.is_ok());
  REQUIRE((*v)->begin_base(base_begin_of(h.journal)).is_ok());
  REQUIRE((*v)->base_data(0, base).is_ok());
  auto refused = [&](std::vector<ShippedRecord> recs, const char* why) {
    for (auto& r : recs) {
      r.header.payload_checksum = payload_checksum(r.payload);
    }
    auto res = (*v)->append(RecordsFrame(recs, 0, recs.size()).records);
    REQUIRE_FALSE(res.is_ok());
    CHECK((*v)->last_error() == proto::ErrorCode::kMalformed);
    CHECK(res.status().message().find(why) != std::string::npos);
    CHECK((*v)->state().durable_seq == 0);
  };
  auto past_end = std::vector<ShippedRecord>{all[0]};
  past_end[0].header.type = format::RecordType::kZero;
  past_end[0].header.payload_length = 0;
  past_end[0].payload.clear();
  past_end[0].header.offset = RandomHistory::kSize - 512;
  past_end[0].header.length = 1024;
  refused(past_end, "past the end of the volume");
  auto old = std::vector<ShippedRecord>{all[0]};
  old[0].header.time_ns = 1;
  refused(old, "older than the record before it");
  // Two marks of one name.
  std::vector<ShippedRecord> marks;
  for (uint64_t seq = 1; seq <= 2; ++seq) {
    ShippedRecord m;
    m.payload = {'d', 'u', 'p'};
    m.header.type = format::RecordType::kMark;
    m.header.seq = seq;
    m.header.time_ns = all[0].header.time_ns;
    m.header.payload_length = 3;
    marks.push_back(m);
  }
  refused(marks, "a second mark named 'dup'");
}

namespace {

using Shipment = std::function<void(proto::Ack*)>;

// The I/O of a shipment into a fresh `store`, counted; *acked gets its last ACK.
uint64_t shipment_changes(const std::string& store, const Shipment& ship, proto::Ack* acked) {
  std::filesystem::remove_all(store);
  std::filesystem::create_directory(store);
  test::FaultInjectionFs fs(store);
  test::ScopedFileSystem use(&fs);
  ship(acked);
  return fs.changes();
}

// A shipment into a fresh `store` cut by a power loss after `n` I/O, its unsynced
// writes torn (odd n) or dropped; returns what it had acknowledged.
proto::Ack ship_until_power_cut(const std::string& store, const Shipment& ship, uint64_t n) {
  std::filesystem::remove_all(store);
  std::filesystem::create_directory(store);
  proto::Ack acked;
  test::FaultInjectionFs fs(store);
  test::ScopedFileSystem use(&fs);
  fs.cut_power_after(n);
  ship(&acked);
  fs.lose_unsynced(
      n % 2 ? test::FaultInjectionFs::Loss::kTear : test::FaultInjectionFs::Loss::kDrop, n);
  return acked;
}

}  // namespace

TEST_CASE("a power cut at any I/O of a store keeps everything it acknowledged",
          "[store][crash][power]") {
  RandomHistory h(33, 60, 15);
  const uint64_t last = h.states.size() - 1;
  const auto all = read_records(h.journal);
  const auto base = base_of(h.journal);
  const auto begin = base_begin_of(h.journal);
  test::TempDir tmp(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp");
  const std::string store = tmp / "store";

  // Ships the volume: the base in 4 chunks, the records in batches of 7; returns the
  // last acknowledgement (all zero before the first).
  auto ship = [&](proto::Ack* acked) {
    auto v = StoredVolume::open(store, "vol", true, {});
    if (!v) return;
    if (!(*v)->begin_base(begin)) return;
    const size_t chunk = base.size() / 4;
    for (size_t at = 0; at < base.size(); at += chunk) {
      auto a = (*v)->base_data(at, std::span(base).subspan(at, std::min(chunk, base.size() - at)));
      if (!a) return;
      *acked = *a;
    }
    for (size_t i = 0; i < all.size(); i += 7) {
      auto a = (*v)->append(RecordsFrame(all, i, std::min(all.size(), i + 7)).records);
      if (!a) return;
      *acked = *a;
    }
  };

  proto::Ack whole;
  const uint64_t total = shipment_changes(store, ship, &whole);
  REQUIRE(whole.durable_seq == last);
  REQUIRE(total > 10);
  for (uint64_t n = 0; n <= total; n += 1) {
    CAPTURE(n);
    const proto::Ack acked = ship_until_power_cut(store, ship, n);
    // Whatever was acknowledged is there after the restart, and restores exactly.
    auto v = StoredVolume::open(store, "vol", true, {});
    INFO(v.status().message());
    REQUIRE(v.is_ok());
    const proto::Welcome w = (*v)->state();
    CHECK(w.base_bytes >= acked.base_bytes);
    CHECK(w.durable_seq >= acked.durable_seq);
    if (w.base_bytes == base.size()) {
      CHECK((*v)->has_base());
      const uint64_t held = w.durable_seq;
      REQUIRE((*v)->close().is_ok());
      v->reset();
      check_store(h, store + "/vol", held);
    }
  }
}

TEST_CASE("a store takes runs of zeroes of a base as their length through a power cut",
          "[store][crash][power]") {
  // A 1 MiB base: 256 KiB of zeroes, 256 KiB of data, 512 KiB of zeroes.
  constexpr uint64_t kSize = 1 << 20, kQuarter = kSize / 4;
  std::vector<uint8_t> image(kSize, 0);
  const auto data = test::pattern(kQuarter, 7);
  std::copy(data.begin(), data.end(), image.begin() + kQuarter);
  proto::BaseBegin begin;
  begin.volume_id[0] = 3;
  begin.image_size = kSize;
  begin.base_time_ns = begin.created_ns = 1000;
  test::TempDir tmp(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp");
  const std::string store = tmp / "store";

  // The three runs in order; the last overlaps what the store holds.
  auto send = [&](StoredVolume& v, proto::Ack* acked) {
    if (!v.begin_base(begin)) return false;
    for (int i = 0; i < 3; ++i) {
      auto a = i == 0   ? v.base_zero(0, kQuarter)
               : i == 1 ? v.base_data(kQuarter, data)
                        : v.base_zero(kQuarter, 3 * kQuarter);
      if (!a) return false;
      *acked = *a;
    }
    return true;
  };
  auto ship = [&](proto::Ack* acked) {
    auto v = StoredVolume::open(store, "vol", true, {});
    if (v) send(**v, acked);
  };
  proto::Ack whole;
  const uint64_t total = shipment_changes(store, ship, &whole);
  REQUIRE(whole.base_bytes == kSize);
  for (uint64_t n = 0; n <= total; ++n) {
    CAPTURE(n);
    proto::Ack acked = ship_until_power_cut(store, ship, n);
    auto v = StoredVolume::open(store, "vol", true, {});
    INFO(v.status().message());
    REQUIRE(v.is_ok());
    const uint64_t held = (*v)->state().base_bytes;
    CHECK(held >= acked.base_bytes);
    // Sent again, what it holds is skipped and the rest completes the image.
    if (held < kSize) REQUIRE(send(**v, &acked));
    REQUIRE((*v)->has_base());
    REQUIRE((*v)->close().is_ok());
    v->reset();
    const auto got = test::read_file(store + "/vol/base/00000000000000000000.img");
    const auto differ = std::mismatch(got.begin(), got.end(), image.begin(), image.end());
    INFO("size " << got.size() << ", first difference at "
                 << std::distance(got.begin(), differ.first));
    const bool same = got == image;
    CHECK(same);
  }
  // The zeroes take no space where the file system has holes.
  std::filesystem::remove_all(store);
  std::filesystem::create_directory(store);
  {
    proto::Ack acked;
    ship(&acked);
    REQUIRE(acked.base_bytes == kSize);
  }
  struct stat st {};
  REQUIRE(::stat((store + "/vol/base/00000000000000000000.img").c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < kSize);

  // A gap is refused, a run past the image too.
  std::filesystem::remove_all(store);
  std::filesystem::create_directory(store);
  auto v = StoredVolume::open(store, "vol", true, {});
  REQUIRE(v.is_ok());
  REQUIRE((*v)->begin_base(begin).is_ok());
  auto gap = (*v)->base_zero(512, 512);
  REQUIRE_FALSE(gap.is_ok());
  CHECK((*v)->last_error() == proto::ErrorCode::kGap);
  auto past = (*v)->base_zero(0, kSize + 512);
  REQUIRE_FALSE(past.is_ok());
  CHECK(past.status().message().find("past the base's") != std::string::npos);
}
