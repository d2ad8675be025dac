// End-to-end: the real nbdkit serving the rewind plugin, driven by libnbd.
#include <catch2/catch.hpp>

#include <libnbd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "../unit/test_util.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/replay.h"
#include "server.h"

using namespace rwd;

namespace {

constexpr uint64_t kSize = 16 << 20;
constexpr int kConnections = 4;

struct Volume {
  test::TempDir dir;
  std::string image = dir / "disk.img";
  std::string journal = dir / "disk.rewind";
  std::string sock = dir / "nbd.sock";
  explicit Volume(uint64_t size = kSize) { test::make_image(image, size); }
  std::vector<std::string> args() const {
    return {"image=" + image, "journal=" + journal, "flush-interval=20ms"};
  }
};

struct Handle {
  struct nbd_handle* h;
  explicit Handle(struct nbd_handle* handle) : h(handle) { REQUIRE(h != nullptr); }
  ~Handle() {
    nbd_shutdown(h, 0);
    nbd_close(h);
  }
};

void check(int rc, struct nbd_handle*) {
  INFO(nbd_get_error());
  REQUIRE(rc == 0);
}

}  // namespace

TEST_CASE("several connections write and zero and trim at once and every connection sees it all",
          "[e2e][libnbd]") {
  Volume vol;
  test::Server server(vol.sock, vol.args());
  std::vector<std::unique_ptr<Handle>> conns;
  for (int i = 0; i < kConnections; ++i)
    conns.push_back(std::make_unique<Handle>(server.connect()));
  struct nbd_handle* h0 = conns[0]->h;
  CHECK(nbd_get_size(h0) == int64_t{kSize});
  CHECK(nbd_can_multi_conn(h0) == 1);
  CHECK(nbd_can_fua(h0) == 1);
  CHECK(nbd_can_flush(h0) == 1);
  CHECK(nbd_can_trim(h0) == 1);
  CHECK(nbd_can_zero(h0) == 1);
  CHECK(nbd_can_fast_zero(h0) == 1);

  // Each connection owns a quarter of the disk and keeps a model of it.
  std::vector<uint8_t> model(kSize, 0);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  const uint64_t quarter = kSize / kConnections;
  for (int t = 0; t < kConnections; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      struct nbd_handle* h = conns[t]->h;
      const uint64_t base = quarter * t;
      for (int i = 0; i < 300; ++i) {
        uint64_t len = 512 * (1 + rng() % 64);
        uint64_t off = base + (rng() % ((quarter - len) / 512)) * 512;
        int op = static_cast<int>(rng() % 10);
        int rc;
        if (op < 7) {
          auto data = test::pattern(len, rng());
          uint32_t flags = op == 0 ? LIBNBD_CMD_FLAG_FUA : 0;
          rc = nbd_pwrite(h, data.data(), len, off, flags);
          std::copy(data.begin(), data.end(), model.begin() + static_cast<long>(off));
        } else if (op < 9) {
          rc = nbd_zero(h, len, off, op == 8 ? LIBNBD_CMD_FLAG_FAST_ZERO : 0);
          std::fill_n(model.begin() + static_cast<long>(off), len, 0);
        } else {
          rc = nbd_trim(h, len, off, 0);
          std::fill_n(model.begin() + static_cast<long>(off), len, 0);
        }
        if (rc != 0) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(failures == 0);
  // One flush, on one connection, covers the writes of all of them (multi-conn).
  check(nbd_flush(h0, 0), h0);
  for (int c = 0; c < kConnections; ++c) {
    std::vector<uint8_t> got(kSize);
    for (uint64_t off = 0; off < kSize; off += 4 << 20)
      check(nbd_pread(conns[c]->h, got.data() + off, 4 << 20, off, 0), conns[c]->h);
    CAPTURE(c);
    CHECK(got == model);
  }
  conns.clear();
  int status = server.stop(SIGTERM);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  // Clean shutdown: the image holds every write and equals replay(base, journal).
  CHECK(test::read_file(vol.image) == model);
  REQUIRE(replay_newest(vol.journal, vol.dir / "replayed.img").is_ok());
  CHECK(test::read_file(vol.dir / "replayed.img") == model);
  auto report = inspect_journal(vol.journal, true);
  REQUIRE(report.is_ok());
  CHECK(report->records() == 4 * 300);
  CHECK(report->manifest.checkpoint_seq == 4 * 300);

  // And a new server serves the same bytes.
  test::Server again(vol.sock, vol.args());
  Handle h(again.connect());
  std::vector<uint8_t> got(kSize);
  for (uint64_t off = 0; off < kSize; off += 4 << 20)
    check(nbd_pread(h.h, got.data() + off, 4 << 20, off, 0), h.h);
  CHECK(got == model);
  CHECK(server.sanitizer_reports() == "");
  CHECK(again.sanitizer_reports() == "");
}

TEST_CASE("out-of-range and oversized and odd requests fail cleanly and the server stays up",
          "[e2e][libnbd][errors]") {
  Volume vol;
  test::Server server(vol.sock, vol.args());
  Handle conn(server.connect());
  struct nbd_handle* h = conn.h;
  // Send what a buggy client would; libnbd would otherwise refuse it itself.
  nbd_set_strict_mode(h, 0);
  std::vector<uint8_t> buf(1 << 20, 0x5a);
  CHECK(nbd_pread(h, buf.data(), 4096, kSize, 0) == -1);
  CHECK(nbd_pwrite(h, buf.data(), 4096, kSize - 512, 0) == -1);
  CHECK(nbd_get_errno() != 0);
  CHECK(nbd_zero(h, 1u << 31, kSize - 4096, 0) == -1);
  CHECK(nbd_trim(h, 8192, kSize, 0) == -1);
  // Unaligned but in range: served byte-exact. (A fresh buffer: libnbd zeroes a read
  // buffer before it reads, failed reads included.)
  const std::vector<uint8_t> three(3, 0x5a);
  check(nbd_pwrite(h, three.data(), 3, 1001, 0), h);
  std::vector<uint8_t> back(5);
  check(nbd_pread(h, back.data(), 5, 1000, 0), h);
  CHECK(back == std::vector<uint8_t>{0, 0x5a, 0x5a, 0x5a, 0});
  // A zero of the whole disk is one record, not a 16 MiB buffer.
  check(nbd_zero(h, kSize, 0, 0), h);
  check(nbd_flush(h, 0), h);
  // The failed requests journaled nothing: two records made it.
  auto report = inspect_journal(vol.journal, true);
  REQUIRE(report.is_ok());
  CHECK(report->records() == 2);
  CHECK(server.running());
  CHECK(server.sanitizer_reports() == "");
}

TEST_CASE("block status reports written data and holes", "[e2e][libnbd]") {
  Volume vol;
  test::Server server(vol.sock, vol.args());
  Handle conn(server.connect(true));
  struct nbd_handle* h = conn.h;
  REQUIRE(nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1);
  std::vector<uint8_t> data(1 << 20, 7);
  check(nbd_pwrite(h, data.data(), data.size(), 4 << 20, 0), h);
  struct Seen {
    std::vector<std::pair<uint64_t, uint32_t>> extents;  // (length, flags)
  } seen;
  auto cb = [](void* user, const char*, uint64_t, uint32_t* entries, size_t n, int*) {
    auto* s = static_cast<Seen*>(user);
    for (size_t i = 0; i + 1 < n; i += 2) s->extents.emplace_back(entries[i], entries[i + 1]);
    return 0;
  };
  check(nbd_block_status(h, kSize, 0, (nbd_extent_callback){cb, &seen, nullptr}, 0), h);
  // Walk the extents to find the flags at 4 MiB (data) and at 0 (hole).
  uint64_t pos = 0;
  uint32_t at_zero = 99, at_data = 99;
  for (auto [len, flags] : seen.extents) {
    if (pos == 0) at_zero = flags;
    if (pos <= (4u << 20) && (4u << 20) < pos + len) at_data = flags;
    pos += len;
  }
  CHECK(at_zero == (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO));
  CHECK(at_data == 0);
  CHECK(server.sanitizer_reports() == "");
}

TEST_CASE("huge requests and 64 connections at once are served or refused cleanly",
          "[e2e][libnbd][errors]") {
  constexpr uint64_t kBig = 192ull << 20;
  Volume vol(kBig);
  test::Server server(vol.sock, vol.args());
  {
    Handle conn(server.connect());
    struct nbd_handle* h = conn.h;
    // 32 MiB in one request: served whole, journaled as one record.
    std::vector<uint8_t> big(32 << 20);
    for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<uint8_t>(i >> 12);
    check(nbd_pwrite(h, big.data(), big.size(), 64 << 20, LIBNBD_CMD_FLAG_FUA), h);
    std::vector<uint8_t> back(big.size());
    check(nbd_pread(h, back.data(), back.size(), 64 << 20, 0), h);
    CHECK(back == big);
  }
  {
    // Larger than nbdkit takes in one request (64 MiB): refused; the server lives on.
    Handle conn(server.connect());
    nbd_set_strict_mode(conn.h, 0);
    std::vector<uint8_t> huge(96 << 20, 1);
    CHECK(nbd_pwrite(conn.h, huge.data(), huge.size(), 0, 0) == -1);
  }
  // 64 connections at once, each writing and flushing its own 1 MiB, then reading
  // every other connection's data back.
  constexpr int kMany = 64;
  std::vector<std::unique_ptr<Handle>> conns;
  for (int i = 0; i < kMany; ++i) conns.push_back(std::make_unique<Handle>(server.connect()));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kMany; ++i)
    threads.emplace_back([&, i] {
      std::vector<uint8_t> data(1 << 20, static_cast<uint8_t>(i + 1));
      if (nbd_pwrite(conns[i]->h, data.data(), data.size(), static_cast<uint64_t>(i) << 20, 0) ||
          nbd_flush(conns[i]->h, 0))
        failures++;
    });
  for (auto& t : threads) t.join();
  CHECK(failures.load() == 0);
  std::vector<uint8_t> got(1 << 20);
  for (int i = 0; i < kMany; ++i) {
    check(nbd_pread(conns[(i + 1) % kMany]->h, got.data(), got.size(),
                    static_cast<uint64_t>(i) << 20, 0),
          nullptr);
    CHECK(got == std::vector<uint8_t>(1 << 20, static_cast<uint8_t>(i + 1)));
  }
  conns.clear();
  CHECK(server.running());
  // Nothing but the 65 good writes was journaled.
  auto report = inspect_journal(vol.journal, true);
  REQUIRE(report.is_ok());
  CHECK(report->records() == 1 + kMany);
  CHECK(server.sanitizer_reports() == "");
}
