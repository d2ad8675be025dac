#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <functional>
#include <thread>

#include <fmt/format.h>

#include "rewind/format/segment.h"
#include "rewind/journal/journal.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/replay.h"
#include "rewind/replay/view.h"
#include "rewind/volume/volume.h"
#include "test_util.h"

using namespace rwd;

namespace {

constexpr uint64_t kSize = 8 << 20;

struct Fixture {
  test::TempDir dir;
  std::string image = dir / "disk.img";
  std::string journal = dir / "disk.rewind";
  std::string log;
  Fixture() { test::make_image(image, kSize); }

  VolumeOptions options() const {
    VolumeOptions o;
    o.image_path = image;
    o.journal_dir = journal;
    o.flush_interval = std::chrono::milliseconds(5);
    return o;
  }
  Logger logger() {
    return [this](LogLevel, const std::string& m) { log += m + "\n"; };
  }
  std::unique_ptr<Volume> open(VolumeOptions o) {
    auto v = Volume::open(o, logger());
    INFO(v.status().message());
    REQUIRE(v.is_ok());
    return std::move(*v);
  }
  std::unique_ptr<Volume> open() { return open(options()); }

  // Serves the volume in a child process that runs `work` and then dies without any
  // shutdown, as a crash would leave it. Requires that `work` succeeded.
  void crash_after(const VolumeOptions& o, const std::function<bool(Volume&)>& work) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      auto v = Volume::open(o, {});
      if (!v) ::_exit(3);
      (*v)->start();
      ::_exit(work(**v) ? 0 : 4);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
  }
};

std::vector<uint8_t> vread(const Volume& v, uint64_t off, size_t n) {
  std::vector<uint8_t> buf(n);
  REQUIRE(v.read(buf, off).is_ok());
  return buf;
}

// The bytes of `path` in [off, off+n).
std::vector<uint8_t> file_range(const std::string& path, uint64_t off, size_t n) {
  auto all = test::read_file(path);
  return std::vector<uint8_t>(all.begin() + static_cast<long>(off),
                              all.begin() + static_cast<long>(off + n));
}

}  // namespace

TEST_CASE("first open creates the journal with a base snapshot of the image", "[volume]") {
  Fixture f;
  auto data = test::pattern(4096, 1);
  test::write_file(f.image, data);
  test::truncate_file(f.image, kSize);
  auto v = f.open();
  CHECK(std::filesystem::exists(f.journal + "/MANIFEST"));
  auto base = test::read_file(f.journal + "/base/00000000000000000000.img");
  CHECK(base == test::read_file(f.image));
  CHECK(v->manifest().base_seq == 0);
  CHECK(v->size() == kSize);
}

TEST_CASE("writes are readable at once and durable after flush and in the image after close",
          "[volume]") {
  Fixture f;
  auto a = test::pattern(8192, 2), b = test::pattern(4096, 3);
  {
    auto v = f.open();
    v->start();
    REQUIRE(v->write(a, 4096, false).is_ok());
    REQUIRE(v->write(b, 8192, false).is_ok());  // overlaps the second half of a
    REQUIRE(v->zero(20000, 1000, false).is_ok());
    REQUIRE(v->trim(1 << 20, 1 << 20, false).is_ok());
    auto got = vread(*v, 4096, 8192);
    CHECK(std::equal(a.begin(), a.begin() + 4096, got.begin()));
    CHECK(std::equal(b.begin(), b.end(), got.begin() + 4096));
    REQUIRE(v->flush().is_ok());
    CHECK(v->queue().durable_seq() == 4);
    REQUIRE(v->close().is_ok());
    CHECK(v->manifest().checkpoint_seq == 4);
    CHECK(v->manifest().segments.size() == 1);
    CHECK(v->manifest().segments[0].sealed);
  }
  CHECK(file_range(f.image, 4096, 4096) == std::vector<uint8_t>(a.begin(), a.begin() + 4096));
  CHECK(file_range(f.image, 8192, 4096) == b);
  // image == replay(base, journal)
  REQUIRE(replay_newest(f.journal, f.dir / "replayed.img").is_ok());
  CHECK(test::read_file(f.dir / "replayed.img") == test::read_file(f.image));
}

TEST_CASE("a FUA write is in the journal when it returns", "[volume]") {
  Fixture f;
  auto v = f.open();
  v->start();
  auto a = test::pattern(4096, 4);
  REQUIRE(v->write(a, 0, true).is_ok());
  CHECK(v->queue().durable_seq() >= 1);
  // Read the open segment as recovery would.
  auto seg =
      SegmentReader::open(segment_path(f.journal, v->manifest().segments.back().file), false);
  REQUIRE(seg.is_ok());
  RecordView rec;
  auto more = seg->next(&rec);
  REQUIRE(more.is_ok());
  REQUIRE(*more);
  CHECK(std::vector<uint8_t>(rec.payload.begin(), rec.payload.end()) == a);
}

TEST_CASE("records queued before the flusher starts are drained by close", "[volume]") {
  Fixture f;
  auto a = test::pattern(512, 5);
  {
    auto v = f.open();
    REQUIRE(v->write(a, 512, false).is_ok());
    CHECK(vread(*v, 512, 512) == a);
    REQUIRE(v->close().is_ok());
  }
  CHECK(file_range(f.image, 512, 512) == a);
}

TEST_CASE("segments roll by size and the volume reopens from many segments", "[volume]") {
  Fixture f;
  VolumeOptions o = f.options();
  o.journal.segment_size = 1 << 20;
  std::vector<uint8_t> expected(kSize, 0);
  {
    auto v = f.open(o);
    v->start();
    for (int i = 0; i < 40; ++i) {
      auto d = test::pattern(100 * 1024, 100 + i);
      uint64_t off = static_cast<uint64_t>(i) * 37 * 4096 % (kSize - d.size());
      REQUIRE(v->write(d, off, i % 7 == 0).is_ok());
      std::copy(d.begin(), d.end(), expected.begin() + static_cast<long>(off));
    }
    REQUIRE(v->close().is_ok());
    CHECK(v->manifest().segments.size() >= 4);
  }
  CHECK(test::read_file(f.image) == expected);
  auto v = f.open(o);
  CHECK(vread(*v, 0, kSize) == expected);
  CHECK(v->queue().last_seq() == 40);
}

TEST_CASE("an open segment is sealed once it reaches segment-age", "[volume]") {
  Fixture f;
  VolumeOptions o = f.options();
  o.journal.segment_age = std::chrono::milliseconds(100);
  auto v = f.open(o);
  v->start();
  auto a = test::pattern(4096, 9);
  REQUIRE(v->write(a, 0, true).is_ok());
  // The flusher checks the age on every pass (each flush-interval, 5 ms here).
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  REQUIRE(v->write(a, 8192, true).is_ok());
  REQUIRE(v->close().is_ok());
  const auto& segs = v->manifest().segments;
  REQUIRE(segs.size() == 2);
  CHECK(segs[0].sealed);
  CHECK(segs[0].last_seq == 1);
  CHECK(segs[1].first_seq == 2);
}

TEST_CASE("a sealed segment checkpoints the image but at most once per seal-checkpoint spacing",
          "[volume]") {
  const bool spaced = GENERATE(false, true);
  CAPTURE(spaced);
  Fixture f;
  VolumeOptions o = f.options();
  o.journal.segment_size = 64 << 10;
  o.checkpoint_interval = std::chrono::hours(1);  // only seals ask for checkpoints here
  o.seal_checkpoint_spacing =
      spaced ? std::chrono::nanoseconds(std::chrono::hours(1)) : std::chrono::nanoseconds(0);
  auto v = f.open(o);
  v->start();
  for (uint64_t i = 0; i < 64; ++i)
    REQUIRE(v->write(test::pattern(4096, i), i * 4096, true).is_ok());
  // The FUA writes sealed several segments; a checkpoint covers the newest sealed one
  // once the image sync that started after it is done (or never, if spaced).
  auto sealed_last = [&] {
    uint64_t last = 0;
    for (const auto& s : v->snapshot()->segments)
      if (s.sealed) last = s.last_seq;
    return last;
  };
  REQUIRE(sealed_last() > 0);
  const uint64_t want = sealed_last();
  for (int i = 0; i < 500 && !spaced && v->snapshot()->checkpoint_seq < want; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (spaced) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const uint64_t checkpoint = v->snapshot()->checkpoint_seq;
  if (spaced) {
    CHECK(checkpoint == 0);
  } else {
    CHECK(checkpoint >= want);
  }
  REQUIRE(v->close().is_ok());
  CHECK(v->manifest().checkpoint_seq == 64);  // close always checkpoints
}

TEST_CASE("after an unclean stop open redoes the journal onto the image", "[volume][crash]") {
  Fixture f;
  auto a = test::pattern(65536, 6);
  VolumeOptions o = f.options();
  o.checkpoint_interval = std::chrono::hours(1);  // no checkpoint before the "crash"
  f.crash_after(o, [&](Volume& v) {
    if (!v.write(a, 1 << 20, false).is_ok() || !v.flush().is_ok()) return false;
    // A flush returns once the record is durable; the flusher applies it to the image
    // just after. Wait for that, or it could land after the zeroing below.
    for (int i = 0; v.queue().queued_bytes() != 0; ++i) {
      if (i == 2000) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    // Undo what the flusher applied, as if the page cache had been lost: the image
    // holds nothing, the journal everything.
    test::write_file(o.image_path, std::vector<uint8_t>(kSize, 0));
    return true;
  });
  CHECK(file_range(f.image, 1 << 20, a.size()) != a);

  auto v = f.open(o);
  CHECK(f.log.find("sealed segment") != std::string::npos);
  CHECK(f.log.find("redoing journal records 1..1") != std::string::npos);
  CHECK(file_range(f.image, 1 << 20, a.size()) == a);
  CHECK(v->manifest().checkpoint_seq == 1);
  REQUIRE(v->close().is_ok());
  REQUIRE(replay_newest(f.journal, f.dir / "replayed.img").is_ok());
  CHECK(test::read_file(f.dir / "replayed.img") == test::read_file(f.image));
}

TEST_CASE("a torn tail left by a crash is discarded with a warning", "[volume][crash]") {
  Fixture f;
  auto a = test::pattern(4096, 7);
  std::string seg_file;
  f.crash_after(f.options(), [&](Volume& v) { return v.write(a, 0, true).is_ok(); });
  auto m = Manifest::load(f.journal);
  REQUIRE(m.is_ok());
  REQUIRE(m->segments.size() == 1);
  REQUIRE_FALSE(m->segments[0].sealed);
  const std::string seg = segment_path(f.journal, m->segments[0].file);
  // A half-written record after the flushed one: a header whose payload never arrived.
  RecordHeader h;
  h.type = format::RecordType::kWrite;
  h.flags = format::kFlagBatchStart;
  h.seq = 2;
  h.time_ns = wall_clock_ns();
  h.length = h.payload_length = 4096;
  h.payload_checksum = 12345;
  auto enc = encode_header(h);
  const uint64_t end = format::kSegmentHeaderSize + format::record_span(4096);
  {
    auto file = File::open(seg, O_RDWR);
    REQUIRE(file.is_ok());
    REQUIRE(file->pwrite_full(enc, end).is_ok());
    REQUIRE(file->pwrite_full(test::pattern(1000, 8), end + enc.size()).is_ok());
  }
  auto v = f.open();
  CHECK(f.log.find(fmt::format("torn tail at offset {} seq 2", end)) != std::string::npos);
  CHECK(v->queue().last_seq() == 1);
  CHECK(vread(*v, 0, 4096) == a);
  CHECK(test::read_file(seg).size() == end);  // cut at the last whole record
}

TEST_CASE("flushes and FUA writes and marks leave flush points in the journal and its index",
          "[volume][marks]") {
  Fixture f;
  auto o = f.options();
  o.flush_interval = std::chrono::hours(1);  // the flusher runs only when asked to
  {
    auto v = f.open(o);
    v->start();
    REQUIRE(v->write(test::pattern(512, 1), 0, false).is_ok());
    REQUIRE(v->write(test::pattern(512, 2), 512, false).is_ok());
    REQUIRE(v->flush().is_ok());
    REQUIRE(v->write(test::pattern(512, 3), 1024, true).is_ok());
    REQUIRE(v->mark("m").is_ok());
    REQUIRE(v->write(test::pattern(512, 4), 1536, false).is_ok());
    REQUIRE(v->close().is_ok());
  }
  auto flush_points = [&] {
    auto m = Manifest::load(f.journal);
    REQUIRE(m.is_ok());
    REQUIRE(m->segments.size() == 1);
    auto loaded = load_segment_entries(f.journal, m->volume_id, m->segments[0], false, {});
    REQUIRE(loaded.is_ok());
    std::vector<uint64_t> seqs;
    for (const IndexEntry& e : loaded->entries)
      if (e.flags & format::kFlagFlushPoint) seqs.push_back(e.seq);
    return seqs;
  };
  // The flush covered seq 2; the FUA write is seq 3, the mark seq 4; seq 5 was only
  // made durable by close.
  CHECK(flush_points() == std::vector<uint64_t>{2, 3, 4});
  auto report = inspect_journal(f.journal, true);
  REQUIRE(report.is_ok());
  CHECK(report->segments.at(0).flush_points == 3);
  // The same from an index rebuilt from the records.
  auto m = Manifest::load(f.journal);
  REQUIRE(m.is_ok());
  std::filesystem::remove(segment_path(f.journal, index_file_name(m->segments[0].file)));
  CHECK(flush_points() == std::vector<uint64_t>{2, 3, 4});
}

TEST_CASE("marks are unique and survive a clean restart and a crash", "[volume][marks]") {
  Fixture f;
  {
    auto v = f.open();
    v->start();
    auto a = test::pattern(4096, 12);
    REQUIRE(v->write(a, 0, false).is_ok());
    auto m = v->mark("first");
    REQUIRE(m.is_ok());
    CHECK(m->seq == 2);  // after the write acknowledged before it
    CHECK(v->queue().durable_seq() >= 2);
    CHECK(v->mark("first").status().message().find("already exists (seq 2)") != std::string::npos);
    CHECK(v->mark("bad name").status().code() == Status::Code::kInvalidArgument);
    REQUIRE(v->close().is_ok());
  }
  // No shutdown: the mark sits in the open segment.
  f.crash_after(f.options(), [](Volume& v) { return v.mark("second").is_ok(); });
  auto v = f.open();
  v->start();
  const auto& marks = v->manifest().marks;
  REQUIRE(marks.size() == 2);
  CHECK(marks[0].name == "first");
  CHECK(marks[1].name == "second");
  CHECK(marks[1].seq == 3);
  CHECK_FALSE(v->mark("second").is_ok());
  CHECK(v->mark("third").is_ok());
}

TEST_CASE("a hold makes new writes wait until the group mark is queued and released",
          "[volume][marks]") {
  Fixture f;
  auto v = f.open();
  v->start();
  REQUIRE(v->write(test::pattern(4096, 1), 0, false).is_ok());  // seq 1, before the hold
  REQUIRE(v->hold(0x42, std::chrono::seconds(10), "g").is_ok());
  CHECK(v->hold(0x43, std::chrono::seconds(10), "h").code() == Status::Code::kBusy);
  CHECK_THAT(v->mark("g").status().message(), Catch::Contains("being taken by a group mark"));
  std::atomic<bool> written{false};
  Status write_status;  // read after the join: Catch's assertions are not thread-safe
  std::thread writer([&] {
    write_status = v->write(test::pattern(4096, 2), 4096, false);
    written = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK_FALSE(written.load());  // it waits for the release
  CHECK_FALSE(v->queue_group_mark(0x43, MarkPayload{"g", "ab", {"01", "02"}}).is_ok());
  auto m = v->queue_group_mark(0x42, MarkPayload{"g", "ab", {"01", "02"}});
  REQUIRE(m.is_ok());
  CHECK(m->seq == 2);  // before the write that waited
  REQUIRE(v->release(0x42).is_ok());
  writer.join();
  CHECK(written.load());
  CHECK(write_status.is_ok());
  CHECK(v->queue().last_seq() == 3);
  REQUIRE(v->wait_durable(m->seq).is_ok());
  CHECK_THAT(v->mark("g").status().message(), Catch::Contains("already exists (seq 2)"));

  // A hold lapses by itself; a group mark after that is refused and marks nothing.
  REQUIRE(v->hold(0x44, std::chrono::milliseconds(50), "late").is_ok());
  REQUIRE(v->write(test::pattern(4096, 3), 8192, false).is_ok());  // waits out the hold
  auto late = v->queue_group_mark(0x44, MarkPayload{"late", "ab", {"01", "02"}});
  CHECK_THAT(late.status().message(), Catch::Contains("lapsed before its mark was queued"));
  CHECK(v->release(0x44).code() == Status::Code::kBusy);
  CHECK(f.log.find("the hold for group mark 'late' lapsed") != std::string::npos);
  CHECK(v->mark("late").is_ok());  // the name was not taken
  REQUIRE(v->close().is_ok());
  // The group mark's payload is in the journal: its group and volumes read back.
  auto h = JournalHistory::load(f.journal, false, {});
  REQUIRE(h.is_ok());
  REQUIRE(h->marks().size() == 2);
  CHECK(h->marks()[0].name == "g");
  CHECK(h->marks()[0].group == "ab");
  CHECK(h->marks()[0].group_volumes == std::vector<std::string>{"01", "02"});
  CHECK(h->marks()[1].group.empty());
}

TEST_CASE("bad images and journals are refused and left untouched", "[volume][errors]") {
  Fixture f;
  SECTION("image size not a multiple of 512") {
    test::truncate_file(f.image, 1000);
    auto v = Volume::open(f.options(), {});
    REQUIRE_FALSE(v.is_ok());
    CHECK(v.status().message().find("multiple of 512") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(f.journal + "/MANIFEST"));
  }
  SECTION("image missing") {
    std::filesystem::remove(f.image);
    auto v = Volume::open(f.options(), {});
    REQUIRE_FALSE(v.is_ok());
    CHECK(v.status().message().find("disk.img") != std::string::npos);
  }
  SECTION("journal of another image") {
    { auto v = f.open(); }
    std::string other = f.dir / "other.img";
    test::make_image(other, kSize);
    VolumeOptions o = f.options();
    o.image_path = other;
    auto before = test::read_file(f.journal + "/MANIFEST");
    auto v = Volume::open(o, {});
    REQUIRE_FALSE(v.is_ok());
    CHECK(v.status().message().find("was created for image") != std::string::npos);
    CHECK(test::read_file(f.journal + "/MANIFEST") == before);
  }
  SECTION("image tagged with another volume's id") {
    { auto v = f.open(); }
    std::string j2 = f.dir / "second.rewind";
    std::string img2 = f.dir / "second.img";
    test::make_image(img2, kSize);
    VolumeOptions o2 = f.options();
    o2.image_path = img2;
    o2.journal_dir = j2;
    { auto v = f.open(o2); }
    // Swap the images: same paths, other volumes.
    std::filesystem::rename(f.image, f.dir / "tmp.img");
    std::filesystem::rename(img2, f.image);
    auto v = Volume::open(f.options(), {});
    // The path matches, so only the volume id tag (a user xattr) can tell.
    REQUIRE_FALSE(v.is_ok());
    CHECK(v.status().message().find("belongs to volume") != std::string::npos);
  }
  SECTION("image resized since the journal was made") {
    { auto v = f.open(); }
    test::truncate_file(f.image, kSize * 2);
    auto v = Volume::open(f.options(), {});
    REQUIRE_FALSE(v.is_ok());
    CHECK(v.status().message().find("resizing a volume is not supported") != std::string::npos);
  }
  SECTION("journal directory holds something else") {
    std::filesystem::create_directories(f.journal);
    test::write_file(f.journal + "/notes.txt", {'x'});
    auto v = Volume::open(f.options(), {});
    REQUIRE_FALSE(v.is_ok());
    CHECK(v.status().message().find("not a rewind journal") != std::string::npos);
  }
  SECTION("journal in use by another server") {
    auto first = f.open();
    auto v = Volume::open(f.options(), {});
    REQUIRE_FALSE(v.is_ok());
    CHECK(v.status().message().find("in use") != std::string::npos);
  }
}

TEST_CASE("requests beyond the end of the volume are refused and journal nothing",
          "[volume][errors]") {
  Fixture f;
  auto v = f.open();
  std::vector<uint8_t> buf(4096);
  CHECK(v->write(buf, kSize - 512, false).errno_value() == EINVAL);
  CHECK(v->zero(kSize, 1, false).errno_value() == EINVAL);
  CHECK(v->trim(~uint64_t{0} - 10, 100, false).errno_value() == EINVAL);
  CHECK(v->read(buf, kSize).errno_value() == EINVAL);
  CHECK(v->queue().last_seq() == 0);
}

TEST_CASE("a batch synced while the flusher waits for more is durable without a flush",
          "[volume]") {
  // The flusher writes a full batch and starts its sync, then waits for the next
  // batch (an hour here). The end of that sync must make the batch durable at once,
  // for the image and the shipper, although no flush asks for it.
  Fixture f;
  auto o = f.options();
  o.flush_interval = std::chrono::hours(1);
  o.queue_max = 4 << 20;  // batches of 1 MiB
  auto v = f.open(o);
  v->start();
  for (uint64_t i = 0; i < 300; ++i)  // 1.2 MiB: one batch and some left over
    REQUIRE(v->write(test::pattern(4096, i), i * 4096, false).is_ok());
  bool durable = false;
  for (int i = 0; i < 3000 && !durable; ++i) {
    durable = v->queue().durable_seq() > 0;
    if (!durable) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(durable);
  CHECK(v->queue().durable_seq() < 300);  // the rest waits for its batch, or a flush
  REQUIRE(v->close().is_ok());
}
