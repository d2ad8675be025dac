// Journal and image I/O errors (through tests/support/fault_fs.h): each is reported
// to the writers and flushers, reads go on, nothing a flush acknowledged is lost, and
// the volume takes writes again once the error is gone. The real-disk counterpart is
// tests/e2e/test-journal-full.sh.
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <thread>

#include "../support/fault_fs.h"
#include "rewind/replay/replay.h"
#include "rewind/replay/restore.h"
#include "rewind/volume/volume.h"
#include "test_util.h"

using namespace rwd;
using test::FaultInjectionFs;
using Op = FaultInjectionFs::Op;

namespace {

constexpr uint64_t kSize = 1 << 20;

struct Fixture {
  test::TempDir tmp{std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp"};
  std::string root = tmp / "vol";
  std::string image = root + "/disk.img";
  std::string journal = root + "/disk.rewind";
  std::string log;
  std::mutex log_mu;  // guards log (the flusher logs too)
  std::unique_ptr<FaultInjectionFs> fs;
  std::unique_ptr<test::ScopedFileSystem> use;
  std::atomic<int> fail_errno{0};
  std::function<bool(Op, const std::string&)> fail_where;
  std::atomic<int> image_syncs{0};  // syncs of the image let through so far

  Fixture() {
    std::filesystem::create_directory(root);
    test::make_image(image, kSize);
    fs = std::make_unique<FaultInjectionFs>(root);
    use = std::make_unique<test::ScopedFileSystem>(fs.get());
    fs->inject([this](Op op, const std::string& path) {
      int e = fail_errno.load();
      if (e != 0 && fail_where(op, path)) return e;
      if (op == Op::kSync && path == image) image_syncs++;
      return 0;
    });
  }

  std::unique_ptr<Volume> open() {
    VolumeOptions o;
    o.image_path = image;
    o.journal_dir = journal;
    o.flush_interval = std::chrono::milliseconds(1);
    o.checkpoint_interval = std::chrono::milliseconds(0);
    o.retry_interval = std::chrono::milliseconds(5);
    o.journal.segment_size = 64 << 10;
    auto v = Volume::open(o, [this](LogLevel, const std::string& m) {
      std::lock_guard lk(log_mu);
      log += m + "\n";
    });
    REQUIRE(v.is_ok());
    (*v)->start();
    return std::move(*v);
  }
  std::string logged() {
    std::lock_guard lk(log_mu);
    return log;
  }
};

bool in_segments(const std::string& path) {
  return path.find("/segments/") != std::string::npos;
}

// Retries a write until the volume takes it again (the flusher retries every 5 ms).
bool write_when_writable(Volume& v, const std::vector<uint8_t>& data, uint64_t off) {
  for (int i = 0; i < 2000; ++i) {
    if (v.write(data, off, true).is_ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// The newest state of the journal equals `expect`, the image too, every seq present.
void check_journal(const Fixture& f, const std::vector<uint8_t>& expect) {
  CHECK(test::read_file(f.image) == expect);
  VerifyReport report;
  Status st = verify_journal(f.journal, f.image, &report, {});
  INFO(st.message());
  CHECK(st.is_ok());
  std::string out = f.tmp / "replayed.img";
  REQUIRE(replay_newest(f.journal, out).is_ok());
  CHECK(test::read_file(out) == expect);
}

}  // namespace

TEST_CASE("a full journal disk fails writes and flushes with ENOSPC until space returns",
          "[errors][io]") {
  Fixture f;
  // Every way the journal grows: new segments, reserving space, appending.
  f.fail_where = [](Op op, const std::string& path) {
    return in_segments(path) && (op == Op::kCreate || op == Op::kWrite || op == Op::kAllocate);
  };
  auto v = f.open();
  std::vector<uint8_t> expect(kSize, 0);
  auto put = [&](const std::vector<uint8_t>& d, uint64_t off) {
    std::copy(d.begin(), d.end(), expect.begin() + static_cast<long>(off));
  };
  auto a = test::pattern(100 << 10, 1);  // spans segments
  REQUIRE(v->write(a, 0, false).is_ok());
  REQUIRE(v->flush().is_ok());
  put(a, 0);

  f.fail_errno = ENOSPC;
  auto b = test::pattern(8192, 2);
  REQUIRE(v->write(b, 200 << 10, false).is_ok());  // acknowledged, not yet flushed
  put(b, 200 << 10);
  Status flushed = v->flush();
  CHECK(flushed.errno_value() == ENOSPC);
  CHECK(v->write(b, 300 << 10, false).errno_value() == ENOSPC);
  CHECK(v->mark("full").status().errno_value() == ENOSPC);
  // Reads go on, and show the acknowledged write that is not yet journaled.
  std::vector<uint8_t> got(kSize);
  REQUIRE(v->read(got, 0).is_ok());
  CHECK(got == expect);
  CHECK(f.logged().find("No space left on device") != std::string::npos);

  f.fail_errno = 0;  // space returns
  auto c = test::pattern(4096, 3);
  REQUIRE(write_when_writable(*v, c, 400 << 10));
  put(c, 400 << 10);
  CHECK(f.logged().find("writable again") != std::string::npos);
  REQUIRE(v->flush().is_ok());
  REQUIRE(v->close().is_ok());
  check_journal(f, expect);
}

TEST_CASE("a failed journal sync is not retried: the segment is cut at its last good sync",
          "[errors][io]") {
  Fixture f;
  f.fail_where = [](Op op, const std::string& path) {
    return in_segments(path) && op == Op::kSync;
  };
  auto v = f.open();
  std::vector<uint8_t> expect(kSize, 0);
  auto a = test::pattern(4096, 1);
  REQUIRE(v->write(a, 0, true).is_ok());
  std::copy(a.begin(), a.end(), expect.begin());

  f.fail_errno = EIO;
  auto b = test::pattern(4096, 2);
  CHECK(v->write(b, 8192, true).errno_value() == EIO);  // the FUA write reports the EIO
  // It may still be written later (it was accepted), never half: readers see it now.
  std::copy(b.begin(), b.end(), expect.begin() + 8192);
  f.fail_errno = 0;
  auto c = test::pattern(4096, 3);
  REQUIRE(write_when_writable(*v, c, 16384));
  std::copy(c.begin(), c.end(), expect.begin() + 16384);
  REQUIRE(v->close().is_ok());
  // The write whose sync failed went again into a new segment, once.
  CHECK(v->manifest().segments.size() >= 2);
  check_journal(f, expect);
}

TEST_CASE("image write and sync errors are reported and the image is redone from the journal",
          "[errors][io]") {
  const Op failing = GENERATE(Op::kWrite, Op::kSync);
  CAPTURE(static_cast<int>(failing));
  Fixture f;
  f.fail_where = [&f, failing](Op op, const std::string& path) {
    return path == f.image && op == failing;
  };
  auto v = f.open();
  std::vector<uint8_t> expect(kSize, 0);
  auto a = test::pattern(4096, 1);
  const int syncs = f.image_syncs;
  REQUIRE(v->write(a, 0, true).is_ok());
  std::copy(a.begin(), a.end(), expect.begin());
  // The flusher checkpoints `a` into the image on its own time: let it, so that the
  // error below meets `b` and not `a` (on a slow machine it otherwise meets `a`).
  for (int i = 0; i < 2000 && f.image_syncs == syncs; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(f.image_syncs > syncs);

  f.fail_errno = EIO;
  auto b = test::pattern(65536, 2);
  REQUIRE(v->write(b, 4096, false).is_ok());
  std::copy(b.begin(), b.end(), expect.begin() + 4096);
  // The journal holds b; the image cannot take it. The next write or flush says so.
  Status st;
  for (int i = 0; i < 2000 && st.is_ok(); ++i) {
    st = v->write(a, 0, false);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(st.errno_value() == EIO);
  CHECK(f.logged().find("Input/output error") != std::string::npos);
  std::vector<uint8_t> got(kSize);
  REQUIRE(v->read(got, 0).is_ok());
  CHECK(got == expect);

  f.fail_errno = 0;
  auto c = test::pattern(4096, 3);
  REQUIRE(write_when_writable(*v, c, 512 << 10));
  std::copy(c.begin(), c.end(), expect.begin() + (512 << 10));
  REQUIRE(v->close().is_ok());
  check_journal(f, expect);
}

TEST_CASE("a volume stopped while the journal fails keeps every flushed write", "[errors][io]") {
  Fixture f;
  f.fail_where = [](Op op, const std::string& path) {
    return in_segments(path) && op == Op::kWrite;
  };
  std::vector<uint8_t> expect(kSize, 0);
  {
    auto v = f.open();
    auto a = test::pattern(4096, 1);
    REQUIRE(v->write(a, 0, true).is_ok());
    std::copy(a.begin(), a.end(), expect.begin());
    f.fail_errno = ENOSPC;
    REQUIRE(v->write(test::pattern(4096, 2), 4096, false).is_ok());
    CHECK(v->flush().errno_value() == ENOSPC);
    CHECK(v->close().errno_value() == ENOSPC);
    CHECK(f.logged().find("not journaled") != std::string::npos);
  }
  f.fail_errno = 0;
  auto v = f.open();
  std::vector<uint8_t> got(kSize);
  REQUIRE(v->read(got, 0).is_ok());
  CHECK(got == expect);
  REQUIRE(v->close().is_ok());
  check_journal(f, expect);
}
