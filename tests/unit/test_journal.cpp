// The journal's sync beside its writes (Journal::write, start_sync, finish_sync): a
// batch written while the last one syncs is durable only once a sync started after it
// has ended, and a failed sync cuts the segment where the last good one ended,
// whatever was written beside it.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <filesystem>

#include "../support/fault_fs.h"
#include "rewind/format/file_names.h"
#include "rewind/format/segment.h"
#include "rewind/journal/journal.h"
#include "rewind/journal/journal_dir.h"
#include "test_util.h"

using namespace rwd;
using test::FaultInjectionFs;

namespace {

constexpr uint64_t kSize = 1 << 20;

// A WRITE of `data` at seq `seq`.
QueuedRecord write_of(uint64_t seq, const std::vector<uint8_t>& data) {
  std::shared_ptr<uint8_t[]> buf(new uint8_t[data.size()]);
  std::memcpy(buf.get(), data.data(), data.size());
  RecordHeader h;
  h.type = format::RecordType::kWrite;
  h.seq = seq;
  h.time_ns = 1000 + seq;
  h.offset = (seq * 4096) % kSize;
  h.length = data.size();
  h.payload_length = static_cast<uint32_t>(data.size());
  h.payload_checksum = payload_checksum(data);
  return QueuedRecord{h, std::move(buf), false};
}

// `n` writes of 4 KiB from seq `first`.
std::vector<QueuedRecord> writes(uint64_t first, uint64_t n) {
  std::vector<QueuedRecord> out;
  for (uint64_t seq = first; seq < first + n; ++seq)
    out.push_back(write_of(seq, test::pattern(4096, seq)));
  return out;
}

std::vector<uint64_t> seqs(std::initializer_list<std::span<const QueuedRecord>> batches) {
  std::vector<uint64_t> out;
  for (auto b : batches)
    for (const QueuedRecord& r : b) out.push_back(r.header.seq);
  return out;
}

// What the journal's segments hold on disk, record by record: header and stored bytes.
std::vector<std::pair<RecordHeader, std::vector<uint8_t>>> records_on_disk(const Journal& j) {
  std::vector<std::pair<RecordHeader, std::vector<uint8_t>>> out;
  for (const ManifestSegment& s : j.manifest().segments) {
    auto r = SegmentReader::open(segment_path(j.dir(), s.file), s.sealed);
    REQUIRE(r.is_ok());
    RecordView v;
    for (;;) {
      auto more = r->next(&v);
      REQUIRE(more.is_ok());
      if (!*more) break;
      out.emplace_back(v.header, std::vector<uint8_t>(v.stored.begin(), v.stored.end()));
    }
  }
  return out;
}

// The seqs of the records the journal's segments hold on disk.
std::vector<uint64_t> seqs_on_disk(const Journal& j) {
  std::vector<uint64_t> out;
  for (const auto& [header, stored] : records_on_disk(j)) out.push_back(header.seq);
  return out;
}

struct Fixture {
  test::TempDir tmp{std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp"};
  std::string image = tmp / "disk.img";
  std::string dir = tmp / "disk.rewind";
  std::unique_ptr<Journal> open(JournalOptions opts = {}) {
    test::make_image(image, kSize);
    auto opened = open_journal_dir(image, dir, false, {});
    REQUIRE(opened.is_ok());
    return std::make_unique<Journal>(dir, std::move(opened->manifest), opts, Logger{});
  }
};

}  // namespace

TEST_CASE("a batch written while the last one syncs is durable only after a sync of its own",
          "[journal]") {
  Fixture f;
  auto j = f.open();
  const uint64_t base = j->durable_seq();
  const auto a = writes(base + 1, 8), b = writes(base + 9, 8);
  REQUIRE(j->write(a).is_ok());
  j->start_sync();
  REQUIRE(j->write(b).is_ok());  // beside the sync in flight
  REQUIRE(j->finish_sync().is_ok());
  CHECK(j->durable_seq() == a.back().header.seq);
  CHECK(j->durable_position().seq == a.back().header.seq);
  j->start_sync();
  REQUIRE(j->finish_sync().is_ok());
  CHECK(j->durable_seq() == b.back().header.seq);
  // With no sync started, finish_sync has nothing to wait for.
  CHECK(j->sync_done());
  REQUIRE(j->finish_sync().is_ok());
  REQUIRE(j->seal().is_ok());
  CHECK(seqs_on_disk(*j) == seqs({a, b}));
}

TEST_CASE("a failed sync cuts the segment at the last good sync with what was written beside it",
          "[journal][errors]") {
  Fixture f;
  std::filesystem::create_directory(f.dir);
  FaultInjectionFs fs(f.tmp.path());
  test::ScopedFileSystem use(&fs);
  std::atomic<bool> failing{false};
  fs.inject([&](FaultInjectionFs::Op op, const std::string& path) {
    const bool segment = path.find("/segments/") != std::string::npos;
    return failing && segment && op == FaultInjectionFs::Op::kSync ? EIO : 0;
  });
  auto j = f.open();
  const uint64_t base = j->durable_seq();
  const auto a = writes(base + 1, 4), b = writes(base + 5, 4), c = writes(base + 9, 4);
  REQUIRE(j->append(a).is_ok());

  failing = true;
  REQUIRE(j->write(b).is_ok());
  j->start_sync();
  REQUIRE(j->write(c).is_ok());  // beside the sync that fails
  CHECK(j->finish_sync().errno_value() == EIO);
  CHECK(j->durable_seq() == a.back().header.seq);
  failing = false;
  REQUIRE(j->recover().is_ok());
  // Neither the batch whose sync failed nor the one written beside it is kept.
  CHECK(j->last_seq() == a.back().header.seq);
  CHECK(seqs_on_disk(*j) == seqs({a}));

  // Written again, into a new segment, they are all there once.
  std::vector<QueuedRecord> again(b);
  again.insert(again.end(), c.begin(), c.end());
  REQUIRE(j->append(again).is_ok());
  CHECK(j->durable_seq() == c.back().header.seq);
  REQUIRE(j->seal().is_ok());
  CHECK(j->manifest().segments.size() == 2);
  CHECK(seqs_on_disk(*j) == seqs({a, b, c}));
}

TEST_CASE("a batch compressed on several threads is stored as one thread stores it",
          "[journal][codec]") {
  // Compressible, incompressible and short writes, mixed, in two batches: one large
  // enough for the compression threads, one that the writing thread compresses alone.
  auto batch = [](uint64_t first, uint64_t n, size_t size) {
    std::vector<QueuedRecord> out;
    for (uint64_t seq = first; seq < first + n; ++seq) {
      const size_t len = seq % 7 == 0 ? 300 : size + 512 * (seq % 5);
      out.push_back(
          write_of(seq, seq % 3 == 0 ? test::pattern(len, seq) : test::compressible(len, seq)));
    }
    return out;
  };
  const auto large = batch(1, 96, 16 << 10), small = batch(97, 8, 4096);
  auto stored_by = [&](unsigned threads) {
    Fixture f;
    JournalOptions o;
    o.compression = Compression{format::Codec::kZstd, 1};
    o.compress_threads = threads;
    auto j = f.open(o);
    REQUIRE(j->append(large).is_ok());
    REQUIRE(j->append(small).is_ok());
    REQUIRE(j->seal().is_ok());
    return records_on_disk(*j);
  };
  const auto one = stored_by(1), four = stored_by(4);
  REQUIRE(one.size() == large.size() + small.size());
  REQUIRE(four.size() == one.size());
  size_t compressed = 0;
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(encode_header(four[i].first) == encode_header(one[i].first));
    CHECK(four[i].second == one[i].second);
    if (one[i].first.codec == format::Codec::kZstd) ++compressed;
  }
  // Two of every three records compress (the third is random data), the short ones never.
  CHECK(compressed > one.size() / 2);
  CHECK(compressed < one.size());
}
