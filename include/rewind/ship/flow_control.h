// How fast the shipper sends (docs/PROTOCOL.md, "Shipping"): a congestion window that
// adapts to the link, and an optional cap on the bytes per second. Both are pure:
// time comes in as an argument, so that tests drive them through any history of
// round trips and sends.
#pragma once

#include <chrono>
#include <cstdint>

namespace rwd {

// The bytes allowed in flight. It grows while round trips stay near the smallest
// seen lately, and halves when they grow past twice that plus 20 ms (a queue has
// built up on the link or at the server's disk):
//  - slow start: until the first cut, each acknowledged byte adds a byte, so a
//    window that is used fully doubles every round trip;
//  - after it, one frame per window's worth acknowledged: a frame per round trip;
//  - a cut happens at most once per (smoothed) round trip, since the round trips of
//    frames already in flight still show the queue the cut is draining;
//  - it grows only when the window limited what was sent (an idle link proves
//    nothing), and stays within [2 frames, kMax];
//  - "lately" is two epochs of 10 s: a path whose delay rose for good stops counting
//    as congested after at most 20 s.
class CongestionWindow {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint64_t kMax = 64ull << 20;
  static constexpr std::chrono::seconds kEpoch{10};
  static constexpr double kQueueDelay = 0.020;  // seconds a round trip may grow by

  CongestionWindow(uint64_t frame_bytes, Clock::time_point now);

  uint64_t bytes() const { return window_; }
  bool slow_start() const { return slow_start_; }
  double smoothed_rtt() const { return srtt_; }  // seconds (0 before the first)
  double min_rtt() const { return min_rtt_; }    // seconds, this epoch and the last

  // An acknowledgement arrived at `now`: `rtt` seconds after the newest frame it
  // covers was sent, for `acked_bytes` of records; `limited` if the window was
  // nearly full when any of those frames went. Returns true if the window was cut.
  bool on_ack(double rtt, uint64_t acked_bytes, bool limited, Clock::time_point now);

 private:
  uint64_t frame_bytes_;
  uint64_t window_;
  bool slow_start_ = true;
  double min_rtt_ = 1e9, epoch_min_rtt_ = 1e9, srtt_ = 0;
  Clock::time_point epoch_start_;
  Clock::time_point last_cut_{};
};

// ship-rate=: a token bucket of `rate` bytes per second that holds a burst of at most
// a frame or a quarter second's worth, whichever is more. A send takes its bytes
// whole, possibly into debt; the next waits until the debt is paid. Over any long
// span the bytes sent are at most rate x span plus one burst.
class RateCap {
 public:
  using Clock = std::chrono::steady_clock;

  // rate 0: no cap.
  RateCap(uint64_t rate, uint64_t frame_bytes, Clock::time_point now);

  // How long to wait from `now` before the next send may go (zero: at once).
  Clock::duration wait(Clock::time_point now);
  // A send of `bytes` goes now (after wait() returned zero).
  void take(uint64_t bytes);

 private:
  void refill(Clock::time_point now);

  double rate_;
  double burst_;
  double tokens_ = 0;
  Clock::time_point refilled_;
};

}  // namespace rwd
