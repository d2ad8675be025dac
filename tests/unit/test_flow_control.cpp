// The shipper's congestion window and rate cap (ship/flow_control.h), driven through
// histories of round trips and sends on a simulated clock.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>

#include "rewind/ship/flow_control.h"

using namespace rwd;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kFrame = 1ull << 20;

// One round trip in which the whole window is sent in frames and each frame's ACK
// comes back `rtt` seconds later, the window full (limited) throughout. Returns how
// many ACKs cut the window.
int round_trip(CongestionWindow& w, Clock::time_point* now, double rtt) {
  const uint64_t frames = std::max<uint64_t>(1, w.bytes() / kFrame);
  const auto step =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(rtt)) /
      static_cast<long>(frames);
  int cuts = 0;
  for (uint64_t i = 0; i < frames; ++i) {
    *now += step;
    cuts += w.on_ack(rtt, kFrame, true, *now) ? 1 : 0;
  }
  return cuts;
}

}  // namespace

TEST_CASE("congestion window: slow start doubles it every round trip, up to the maximum",
          "[flow]") {
  auto now = Clock::time_point{} + 1h;
  CongestionWindow w(kFrame, now);
  CHECK(w.bytes() == 4 * kFrame);
  CHECK(w.slow_start());
  for (uint64_t expected : {8 * kFrame, 16 * kFrame, 32 * kFrame, 64 * kFrame, 64 * kFrame}) {
    CHECK(round_trip(w, &now, 0.010) == 0);
    CHECK(w.bytes() == expected);
  }
  CHECK(w.bytes() == CongestionWindow::kMax);
  CHECK(w.smoothed_rtt() == Approx(0.010));
}

TEST_CASE("congestion window: after the first cut it grows by one frame per round trip", "[flow]") {
  auto now = Clock::time_point{} + 1h;
  CongestionWindow w(kFrame, now);
  for (int i = 0; i < 2; ++i) round_trip(w, &now, 0.010);  // 16 frames
  now += 1s;
  REQUIRE(w.on_ack(0.500, kFrame, true, now));  // a queue: cut to 8 frames
  CHECK(w.bytes() == 8 * kFrame);
  CHECK_FALSE(w.slow_start());
  // Back to short round trips: linear growth, about one frame per round trip.
  now += 1s;
  for (int rt = 1; rt <= 10; ++rt) {
    const uint64_t before = w.bytes();
    CHECK(round_trip(w, &now, 0.010) == 0);
    const double grown = static_cast<double>(w.bytes() - before) / kFrame;
    CAPTURE(rt, grown);
    CHECK(grown > 0.85);
    CHECK(grown < 1.15);
  }
}

TEST_CASE("congestion window: a grown round trip halves it at most once per round trip", "[flow]") {
  auto now = Clock::time_point{} + 1h;
  CongestionWindow w(kFrame, now);
  for (int i = 0; i < 3; ++i) round_trip(w, &now, 0.010);  // 32 frames, min rtt 10 ms
  REQUIRE(w.bytes() == 32 * kFrame);
  // Round trips grow to 200 ms (past 2 x 10 ms + 20 ms): every ACK of the frames in
  // flight shows it, and only the first within a smoothed round trip cuts.
  now += 1s;
  int cuts = 0;
  for (int i = 0; i < 10; ++i) {
    now += 5ms;
    cuts += w.on_ack(0.200, kFrame, true, now) ? 1 : 0;
  }
  CHECK(cuts == 1);
  CHECK(w.bytes() == 16 * kFrame);
  // One smoothed round trip later, still queued: a second cut.
  now +=
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(w.smoothed_rtt())) +
      1ms;
  CHECK(w.on_ack(0.200, kFrame, true, now));
  CHECK(w.bytes() == 8 * kFrame);
  // A round trip just under the threshold neither cuts nor counts as a queue.
  now += 1s;
  CHECK_FALSE(w.on_ack(0.029, kFrame, true, now));
  CHECK(w.bytes() > 8 * kFrame);
}

TEST_CASE("congestion window: never under two frames, and no growth when not limited", "[flow]") {
  auto now = Clock::time_point{} + 1h;
  CongestionWindow w(kFrame, now);
  w.on_ack(0.010, kFrame, true, now);
  for (int i = 0; i < 20; ++i) {
    now += 1s;
    w.on_ack(1.0, kFrame, true, now);
  }
  CHECK(w.bytes() == 2 * kFrame);
  // An idle link (the window never full) proves nothing: the window stays.
  const uint64_t before = w.bytes();
  now += 1min;  // two epochs: the 1 s round trips are forgotten
  for (int i = 0; i < 100; ++i) {
    now += 10ms;
    CHECK_FALSE(w.on_ack(0.010, kFrame, false, now));
  }
  CHECK(w.bytes() == before);
}

TEST_CASE("congestion window: a delay that rose for good stops counting as a queue", "[flow]") {
  auto now = Clock::time_point{} + 1h;
  CongestionWindow w(kFrame, now);
  round_trip(w, &now, 0.010);
  // The path now takes 100 ms each way for good: cuts at first, then, once the short
  // round trips are two epochs old (past 20 s), 200 ms is the new normal.
  int cuts_early = 0, cuts_late = 0;
  for (int s = 0; s < 80; ++s) {
    now += 500ms;
    const bool cut = w.on_ack(0.200, kFrame, true, now);
    (s < 41 ? cuts_early : cuts_late) += cut ? 1 : 0;
  }
  CHECK(cuts_early > 0);
  CHECK(cuts_late == 0);
  CHECK(w.min_rtt() == Approx(0.200));
}

TEST_CASE("rate cap: holds the rate over time, whatever the frame size", "[flow]") {
  for (uint64_t frame : {4096ull, 64ull << 10, 1ull << 20}) {
    CAPTURE(frame);
    const uint64_t rate = 1ull << 20;  // 1 MiB/s
    auto now = Clock::time_point{} + 1h;
    const auto start = now;
    RateCap cap(rate, frame, now);
    uint64_t sent = 0;
    // Send as fast as the cap allows for 10 s.
    while (now - start < 10s) {
      const auto wait = cap.wait(now);
      if (wait > Clock::duration::zero()) {
        now += wait;
        CHECK(cap.wait(now) == Clock::duration::zero());  // waiting that long is enough
        continue;
      }
      cap.take(frame);
      sent += frame;
    }
    const double seconds = std::chrono::duration<double>(now - start).count();
    const double burst = std::max<double>(static_cast<double>(frame), rate / 4.0);
    CHECK(static_cast<double>(sent) <= rate * seconds + burst + static_cast<double>(frame));
    CHECK(static_cast<double>(sent) >= rate * seconds - static_cast<double>(frame));
  }
}

TEST_CASE("rate cap: after an idle spell, one burst goes at once, then the rate", "[flow]") {
  const uint64_t rate = 4ull << 20, frame = 64ull << 10;  // burst: a quarter second, 1 MiB
  auto now = Clock::time_point{} + 1h;
  RateCap cap(rate, frame, now);
  now += 1min;  // idle: the bucket fills, to the burst and no further
  uint64_t at_once = 0;
  while (cap.wait(now) == Clock::duration::zero()) {
    cap.take(frame);
    at_once += frame;
  }
  // The burst, plus the frame that took the bucket into debt.
  CHECK(at_once == rate / 4 + frame);
  // The next frame waits for the debt: one frame's time at the rate.
  const double wait = std::chrono::duration<double>(cap.wait(now)).count();
  CHECK(wait == Approx(static_cast<double>(frame) / rate).epsilon(0.01));
}

TEST_CASE("rate cap: rate 0 never waits", "[flow]") {
  auto now = Clock::time_point{} + 1h;
  RateCap cap(0, kFrame, now);
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(cap.wait(now) == Clock::duration::zero());
    cap.take(kFrame);
  }
}
