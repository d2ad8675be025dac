#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <deque>
#include <future>
#include <random>
#include <thread>

#include "rewind/volume/write_queue.h"
#include "test_util.h"

using namespace rwd;
using format::RecordType;

namespace {

constexpr uint64_t kAll = UINT64_MAX;  // take()'s batch_bytes for "everything pending"

RecordHeader write_header(uint64_t offset, uint64_t len) {
  RecordHeader h;
  h.type = RecordType::kWrite;
  h.offset = offset;
  h.length = len;
  h.payload_length = static_cast<uint32_t>(len);
  return h;
}

Payload bytes(size_t n, uint8_t value) {
  std::shared_ptr<uint8_t[]> p(new uint8_t[n]);
  std::memset(p.get(), value, n);
  return p;
}

// Reads through the overlay with a base that is all 0xEE.
std::vector<uint8_t> read(const WriteQueue& q, uint64_t offset, size_t n) {
  std::vector<uint8_t> buf(n);
  Status st = q.read(buf, offset, [](std::span<uint8_t> b) {
    std::memset(b.data(), 0xEE, b.size());
    return Status::ok();
  });
  REQUIRE(st.is_ok());
  return buf;
}

std::vector<uint8_t> expect(std::initializer_list<std::pair<size_t, uint8_t>> runs) {
  std::vector<uint8_t> v;
  for (auto [n, b] : runs) v.insert(v.end(), n, b);
  return v;
}

// Runs the flusher's take() (an hour's wait) on a thread: true if it goes on waiting
// until note_synced(), then returns at once with nothing taken. Stops the queue if it
// does not return, so that it does.
bool ends_empty_at_sync(WriteQueue& q) {
  auto next = std::async(std::launch::async, [&] {
    std::vector<QueuedRecord> more;
    return q.take(std::chrono::hours(1), kAll, &more) && more.empty();
  });
  const bool waits = next.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout;
  q.note_synced();
  const bool woken = next.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  if (!woken) q.stop();
  return next.get() && waits && woken;
}

}  // namespace

TEST_CASE("a read sees a queued write before it is journaled", "[queue]") {
  WriteQueue q(1 << 20, 1, 0);
  REQUIRE(q.push(write_header(100, 50), bytes(50, 0xAA)).is_ok());
  CHECK(read(q, 80, 100) == expect({{20, 0xEE}, {50, 0xAA}, {30, 0xEE}}));
}

TEST_CASE("partially overlapping queued writes resolve newest-wins", "[queue]") {
  WriteQueue q(1 << 20, 1, 0);
  REQUIRE(q.push(write_header(0, 100), bytes(100, 1)).is_ok());
  REQUIRE(q.push(write_header(50, 100), bytes(100, 2)).is_ok());
  REQUIRE(q.push(write_header(20, 10), bytes(10, 3)).is_ok());
  RecordHeader z;
  z.type = RecordType::kZero;
  z.offset = 140;
  z.length = 20;
  REQUIRE(q.push(z, nullptr).is_ok());
  CHECK(read(q, 0, 170) == expect({{20, 1}, {10, 3}, {20, 1}, {90, 2}, {20, 0}, {10, 0xEE}}));
}

TEST_CASE("applied records leave the overlay and free queue space", "[queue]") {
  WriteQueue q(1 << 20, 1, 0);
  REQUIRE(q.push(write_header(0, 10), bytes(10, 1)).is_ok());
  REQUIRE(q.push(write_header(5, 10), bytes(10, 2)).is_ok());
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &batch));
  REQUIRE(batch.size() == 2);
  // Durable but not applied: still served from the overlay.
  q.mark_durable(2);
  CHECK(read(q, 0, 15) == expect({{5, 1}, {10, 2}}));
  q.mark_applied(batch);
  CHECK(read(q, 0, 15) == expect({{15, 0xEE}}));
  CHECK(q.queued_bytes() == 0);
}

TEST_CASE("reads equal every write in order while batches are taken and applied (property)",
          "[queue]") {
  // The overlay keeps a generation per batch; pieces of a newer generation hide an older
  // one's, and a generation leaves only once all its records are in the image. Checked
  // against a model: after every step, a read of the whole volume through the queue,
  // over an image that holds exactly the applied records, is every write so far.
  constexpr uint64_t kSize = 8192;
  std::mt19937_64 rng(GENERATE(1u, 2u, 3u, 4u));
  std::vector<uint8_t> image(kSize, 0xEE), written(kSize, 0xEE);
  WriteQueue q(1ull << 30, 1, 0);
  std::deque<std::vector<QueuedRecord>> taken;  // journaled, not yet applied, oldest first
  for (int step = 0; step < 4000; ++step) {
    const auto op = rng() % 10;
    if (op < 6) {
      const uint64_t offset = rng() % kSize;
      const uint64_t length = 1 + rng() % std::min<uint64_t>(kSize - offset, 700);
      const auto value = static_cast<uint8_t>(step % 251);
      if (op < 5) {
        REQUIRE(q.push(write_header(offset, length), bytes(length, value)).is_ok());
        std::memset(written.data() + offset, value, length);
      } else {
        RecordHeader z;
        z.type = RecordType::kZero;
        z.offset = offset;
        z.length = length;
        REQUIRE(q.push(z, nullptr).is_ok());
        std::memset(written.data() + offset, 0, length);
      }
    } else if (op < 8) {
      std::vector<QueuedRecord> batch;
      REQUIRE(q.take(std::chrono::milliseconds(0), 1 + rng() % 3000, &batch));
      if (!batch.empty()) taken.push_back(std::move(batch));
    } else if (!taken.empty()) {
      const std::vector<QueuedRecord>& batch = taken.front();
      for (const QueuedRecord& r : batch) {
        uint8_t* at = image.data() + r.header.offset;
        if (r.header.type == RecordType::kWrite) {
          std::memcpy(at, r.payload.get(), r.header.length);
        } else {
          std::memset(at, 0, r.header.length);
        }
      }
      q.mark_durable(batch.back().header.seq);
      q.mark_applied(batch);
      taken.pop_front();
    }
    std::vector<uint8_t> got(kSize);
    REQUIRE(q.read(got, 0, [&](std::span<uint8_t> b) {
               std::memcpy(b.data(), image.data(), b.size());
               return Status::ok();
             }).is_ok());
    REQUIRE(got == written);
  }
}

TEST_CASE("writers wait while the queue is full and resume when it drains", "[queue]") {
  const uint64_t one = WriteQueue::cost(write_header(0, 1000));
  WriteQueue q(3 * one, 1, 0);
  for (int i = 0; i < 3; ++i) REQUIRE(q.push(write_header(0, 1000), bytes(1000, 1)).is_ok());
  std::atomic<bool> done{false};
  std::atomic<bool> pushed{false};  // Catch2 assertions belong to the main thread
  std::thread writer([&] {
    pushed = q.push(write_header(0, 1000), bytes(1000, 2)).is_ok();
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK_FALSE(done.load());  // back-pressure: the fourth record does not fit
  CHECK(q.queued_bytes() == 3 * one);
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &batch));
  q.mark_durable(batch.back().header.seq);
  q.mark_applied(batch);
  writer.join();
  CHECK(done.load());
  CHECK(pushed);
  CHECK(q.queued_bytes() == one);
}

TEST_CASE("seq is gapless and time non-decreasing under many concurrent writers", "[queue]") {
  WriteQueue q(1ull << 30, 1, 0);
  const int threads = 8, per_thread = 5000;
  std::vector<std::vector<uint64_t>> seqs(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto r = q.push(write_header(static_cast<uint64_t>(t) * 8, 8),
                        bytes(8, static_cast<uint8_t>(t)));
        if (r.is_ok()) seqs[t].push_back(*r);
      }
    });
  }
  for (auto& t : ts) t.join();
  std::vector<QueuedRecord> all;
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &all));
  REQUIRE(all.size() == size_t{threads} * per_thread);
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(all[i].header.seq == i + 1);
    if (i > 0) CHECK(all[i].header.time_ns >= all[i - 1].header.time_ns);
  }
  for (const auto& s : seqs) {
    REQUIRE(s.size() == size_t{per_thread});
    CHECK(std::is_sorted(s.begin(), s.end()));
  }
  CHECK(q.last_seq() == all.size());
}

TEST_CASE("when the clock steps back the last time is reused", "[queue]") {
  std::vector<uint64_t> clock = {1000, 2000, 1500, 900, 2500};
  size_t tick = 0;
  WriteQueue q(1 << 20, 10, 500, [&] { return clock[tick++]; });
  std::vector<uint64_t> times;
  for (size_t i = 0; i < clock.size(); ++i)
    REQUIRE(q.push(write_header(0, 1), bytes(1, 0)).is_ok());
  std::vector<QueuedRecord> all;
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &all));
  for (const auto& r : all) times.push_back(r.header.time_ns);
  CHECK(times == std::vector<uint64_t>{1000, 2000, 2000, 2000, 2500});
  CHECK(all.front().header.seq == 10);
}

TEST_CASE("flush waiters return once the flusher reports their seq durable", "[queue]") {
  WriteQueue q(1 << 20, 1, 0);
  REQUIRE(q.push(write_header(0, 1), bytes(1, 0)).is_ok());
  std::atomic<bool> flushed{false};
  std::atomic<bool> ok{false};
  std::thread waiter([&] {
    ok = q.wait_durable().is_ok();
    flushed = true;
  });
  std::vector<QueuedRecord> batch;
  // The waiter's request wakes take() at once although the batch is tiny.
  REQUIRE(q.take(std::chrono::seconds(30), 1ull << 30, &batch));
  REQUIRE(batch.size() == 1);
  CHECK_FALSE(flushed.load());
  q.mark_durable(1);
  waiter.join();
  CHECK(flushed.load());
  CHECK(ok);
}

TEST_CASE("the end of a journal sync wakes the flusher for a flush whose records it holds",
          "[queue]") {
  // The flusher took the record and started its sync; nothing is pending. A flush
  // waiting for that record must not wait for the flusher's interval (an hour here).
  WriteQueue q(1 << 20, 1, 0);
  REQUIRE(q.push(write_header(0, 1), bytes(1, 0)).is_ok());
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &batch));
  std::atomic<bool> ok{false};
  std::thread waiter([&] { ok = q.wait_durable().is_ok(); });
  // The flush alone does not end the wait: its record is not pending.
  CHECK(ends_empty_at_sync(q));
  q.mark_durable(1);
  waiter.join();
  CHECK(ok);
}

TEST_CASE(
    "the end of a journal sync wakes the flusher to collect it and leaves a small batch pending",
    "[queue]") {
  // Nobody waits and one small record is pending: no batch is due for an hour. The
  // flusher must still learn at once that a sync ended (its records become durable,
  // for the image and the shipper), without taking the record before its batch.
  WriteQueue q(1 << 20, 1, 0);
  REQUIRE(q.push(write_header(0, 1), bytes(1, 0)).is_ok());
  CHECK(ends_empty_at_sync(q));
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &batch));
  CHECK(batch.size() == 1);
}

TEST_CASE("a journaling failure fails writers and flush waiters until it is cleared", "[queue]") {
  WriteQueue q(1 << 20, 1, 0);
  REQUIRE(q.push(write_header(0, 1), bytes(1, 0)).is_ok());
  q.fail(Status::io_error("journal write failed", ENOSPC));
  Status st = q.wait_durable();
  CHECK(st.errno_value() == ENOSPC);
  CHECK(q.push(write_header(0, 1), bytes(1, 0)).status().errno_value() == ENOSPC);
  // Reads still see the queued data, and the flusher still gets the record.
  CHECK(read(q, 0, 1) == expect({{1, 0}}));
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(1), kAll, &batch));
  REQUIRE(batch.size() == 1);
  CHECK(batch[0].header.seq == 1);
  q.clear_error();
  CHECK(q.push(write_header(0, 1), bytes(1, 0)).is_ok());
  q.mark_durable(2);
  CHECK(q.wait_durable().is_ok());
}

TEST_CASE("the record a flush waits for is flagged as a flush point while it is queued",
          "[queue]") {
  WriteQueue q(1 << 20, 1, 0);
  for (int i = 0; i < 3; ++i) REQUIRE(q.push(write_header(0, 1), bytes(1, 0)).is_ok());
  std::atomic<bool> ok1{false}, ok2{false};
  std::thread waiter([&] { ok1 = q.wait_durable().is_ok(); });
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::seconds(30), 1ull << 30, &batch));  // woken by the flush
  REQUIRE(batch.size() == 3);
  // A flush that arrives while its records are being written cannot flag them.
  std::thread late([&] { ok2 = q.wait_durable(2).is_ok(); });
  q.mark_durable(3);
  waiter.join();
  late.join();
  CHECK(ok1);
  CHECK(ok2);
  std::vector<uint8_t> flags;
  for (const auto& r : batch) flags.push_back(r.header.flags);
  CHECK(flags == std::vector<uint8_t>{0, 0, format::kFlagFlushPoint});
  // Nothing is flagged when everything is durable already.
  CHECK(q.wait_durable().is_ok());
  REQUIRE(q.push(write_header(0, 1), bytes(1, 0)).is_ok());
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &batch));
  CHECK(batch.at(0).header.flags == 0);
}

TEST_CASE("take moves about batch_bytes of the oldest records and leaves the rest", "[queue]") {
  const uint64_t one = WriteQueue::cost(write_header(0, 1000));
  WriteQueue q(1 << 20, 1, 0);
  for (int i = 0; i < 10; ++i) REQUIRE(q.push(write_header(0, 1000), bytes(1000, 1)).is_ok());
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(0), 3 * one, &batch));
  REQUIRE(batch.size() == 3);
  CHECK(batch.front().header.seq == 1);
  REQUIRE(q.take(std::chrono::milliseconds(0), 1, &batch));  // at least one, however small
  REQUIRE(batch.size() == 1);
  CHECK(batch.front().header.seq == 4);
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &batch));
  REQUIRE(batch.size() == 6);
  CHECK(batch.back().header.seq == 10);
}

TEST_CASE("a full batch or a writer waiting for space wakes the flusher at once", "[queue]") {
  const uint64_t one = WriteQueue::cost(write_header(0, 1000));
  WriteQueue q(4 * one, 1, 0);
  std::vector<QueuedRecord> batch;
  // The first take() waits for 2 records' worth; the second push wakes it.
  std::atomic<int> pushed{0};
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int i = 0; i < 2; ++i) pushed += q.push(write_header(0, 1000), bytes(1000, 1)).is_ok();
  });
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(q.take(std::chrono::seconds(30), 2 * one, &batch));
  writer.join();
  CHECK(pushed == 2);
  CHECK(batch.size() == 2);
  // Batch too large to fill: a writer that finds the queue full wakes take().
  for (int i = 0; i < 2; ++i) REQUIRE(q.push(write_header(0, 1000), bytes(1000, 1)).is_ok());
  std::atomic<bool> blocked_ok{false};
  std::thread blocked([&] { blocked_ok = q.push(write_header(0, 1000), bytes(1000, 2)).is_ok(); });
  std::vector<QueuedRecord> next;
  REQUIRE(q.take(std::chrono::seconds(30), kAll, &next));
  CHECK(next.size() == 2);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));
  q.mark_durable(4);
  q.mark_applied(batch);
  blocked.join();
  CHECK(blocked_ok);
}

TEST_CASE("coalescing supersedes queued writes a newer one covers whole, and no others",
          "[queue][coalesce]") {
  WriteQueue q(1 << 20, 1, 0);
  q.set_coalesce(true);
  REQUIRE(q.push(write_header(0, 100), bytes(100, 1)).is_ok());    // 1: covered by 4
  REQUIRE(q.push(write_header(150, 100), bytes(100, 2)).is_ok());  // 2: only half covered
  RecordHeader z;
  z.type = RecordType::kZero;
  z.offset = 20;
  z.length = 30;
  REQUIRE(q.push(z, nullptr).is_ok());                           // 3: covered by 4
  REQUIRE(q.push(write_header(0, 200), bytes(200, 4)).is_ok());  // 4
  const uint64_t before = q.queued_bytes();
  CHECK(q.coalesced().records == 2);
  CHECK(q.coalesced().bytes == 130);
  CHECK(read(q, 0, 260) == expect({{200, 4}, {50, 2}, {10, 0xEE}}));

  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &batch));
  REQUIRE(batch.size() == 4);
  for (uint64_t i : {0, 2}) {
    CAPTURE(i);
    const RecordHeader& h = batch[i].header;
    CHECK((h.flags & format::kFlagSuperseded) != 0);
    CHECK(h.payload_length == format::kSupersededPayload);
    CHECK(batch[i].payload[0] == 4);  // the seq of the record that covered it
    CHECK(h.payload_checksum ==
          payload_checksum(std::span<const uint8_t>(batch[i].payload.get(), 8)));
    CHECK(validate_header(h).is_ok());
  }
  CHECK((batch[1].header.flags & format::kFlagSuperseded) == 0);
  CHECK((batch[3].header.flags & format::kFlagSuperseded) == 0);
  // The superseded WRITE gave its 100 bytes back; the ZERO took 8 for the cover's seq.
  uint64_t cost = 0;
  for (const QueuedRecord& r : batch) cost += WriteQueue::cost(r.header);
  CHECK(before == cost);
  CHECK(before == 4 * format::kRecordHeaderSize + 8 + 100 + 8 + 200);

  // Taken records are never superseded.
  REQUIRE(q.push(write_header(0, 300), bytes(300, 5)).is_ok());
  CHECK(q.coalesced().records == 2);
}

TEST_CASE("flushes, FUA writes and marks stop coalescing of what they cover", "[queue][coalesce]") {
  WriteQueue q(1 << 20, 1, 0);
  q.set_coalesce(true);
  // A FUA write is a flush point from the moment it is queued.
  RecordHeader fua = write_header(0, 100);
  fua.flags = format::kFlagFlushPoint;
  REQUIRE(q.push(fua, bytes(100, 1)).is_ok());                   // 1
  REQUIRE(q.push(write_header(0, 100), bytes(100, 2)).is_ok());  // 2: may not supersede 1
  CHECK(q.coalesced().records == 0);
  // A FLUSH that began waiting protects everything queued before it.
  std::atomic<bool> flushed{false};
  std::thread flush([&] { flushed = q.wait_durable().is_ok(); });
  while (q.flush_wanted() < 2) std::this_thread::yield();
  REQUIRE(q.push(write_header(0, 100), bytes(100, 3)).is_ok());  // 3: may not supersede 2
  CHECK(q.coalesced().records == 0);
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(0), kAll, &batch));
  REQUIRE(batch.size() == 3);
  CHECK((batch[1].header.flags & format::kFlagFlushPoint) != 0);
  q.mark_durable(3);
  flush.join();
  CHECK(flushed);
  q.mark_applied(batch);
  // Later writes coalesce again.
  REQUIRE(q.push(write_header(0, 100), bytes(100, 4)).is_ok());  // 4
  REQUIRE(q.push(write_header(0, 100), bytes(100, 5)).is_ok());  // 5 supersedes 4
  CHECK(q.coalesced().records == 1);
  // A mark is a flush point from the moment it is queued.
  RecordHeader mark;
  mark.type = RecordType::kMark;
  mark.flags = format::kFlagFlushPoint;
  mark.payload_length = 1;
  REQUIRE(q.push(mark, bytes(1, 'm')).is_ok());                  // 6
  REQUIRE(q.push(write_header(0, 100), bytes(100, 7)).is_ok());  // 7: may not supersede 5
  CHECK(q.coalesced().records == 1);
}

TEST_CASE("waiting for a superseded record waits for the record that covered it",
          "[queue][coalesce]") {
  WriteQueue q(1 << 20, 1, 0);
  q.set_coalesce(true);
  REQUIRE(q.push(write_header(0, 100), bytes(100, 1)).is_ok());  // 1
  REQUIRE(q.push(write_header(0, 100), bytes(100, 2)).is_ok());  // 2 supersedes 1
  REQUIRE(q.push(write_header(0, 100), bytes(100, 3)).is_ok());  // 3 supersedes 2
  REQUIRE(q.coalesced().records == 2);
  std::atomic<bool> done{false};
  std::atomic<bool> ok{false};
  std::thread waiter([&] {
    ok = q.wait_durable(1).is_ok();
    done = true;
  });
  std::vector<QueuedRecord> batch;
  REQUIRE(q.take(std::chrono::milliseconds(1000), kAll, &batch));
  REQUIRE(batch.size() == 3);
  q.mark_durable(2);  // record 1 is, but its bytes are in 3
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(done);
  q.mark_durable(3);
  waiter.join();
  CHECK(done);
  CHECK(ok);
}
