#include "rewind/ship/flow_control.h"

#include <algorithm>

namespace rwd {

CongestionWindow::CongestionWindow(uint64_t frame_bytes, Clock::time_point now)
    : frame_bytes_(frame_bytes), window_(4 * frame_bytes), epoch_start_(now) {}

bool CongestionWindow::on_ack(double rtt, uint64_t acked_bytes, bool limited,
                              Clock::time_point now) {
  if (now - epoch_start_ > kEpoch) {
    min_rtt_ = std::min(rtt, epoch_min_rtt_);
    epoch_min_rtt_ = rtt;
    epoch_start_ = now;
  }
  min_rtt_ = std::min(min_rtt_, rtt);
  epoch_min_rtt_ = std::min(epoch_min_rtt_, rtt);
  srtt_ = srtt_ == 0 ? rtt : 0.875 * srtt_ + 0.125 * rtt;
  const uint64_t min_window = 2 * frame_bytes_;
  if (rtt > 2 * min_rtt_ + kQueueDelay) {
    if (now - last_cut_ <= std::chrono::duration<double>(srtt_)) return false;
    window_ = std::max(min_window, window_ / 2);
    last_cut_ = now;
    slow_start_ = false;
    return true;
  }
  if (limited) {
    const uint64_t grow =
        slow_start_
            ? acked_bytes
            : std::max<uint64_t>(1, frame_bytes_ * acked_bytes / std::max<uint64_t>(1, window_));
    window_ = std::min(kMax, window_ + grow);
  }
  return false;
}

RateCap::RateCap(uint64_t rate, uint64_t frame_bytes, Clock::time_point now)
    : rate_(static_cast<double>(rate)),
      burst_(std::max(static_cast<double>(frame_bytes), static_cast<double>(rate) / 4)),
      refilled_(now) {}

void RateCap::refill(Clock::time_point now) {
  if (now <= refilled_) return;
  tokens_ =
      std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - refilled_).count());
  refilled_ = now;
}

RateCap::Clock::duration RateCap::wait(Clock::time_point now) {
  if (rate_ == 0) return Clock::duration::zero();
  refill(now);
  // Less than a byte of debt is none: what is left of rounding.
  if (tokens_ > -1) return Clock::duration::zero();
  // Rounded up, so that waiting that long always pays the debt.
  return std::chrono::ceil<Clock::duration>(std::chrono::duration<double>(-tokens_ / rate_));
}

void RateCap::take(uint64_t bytes) {
  if (rate_ != 0) tokens_ -= static_cast<double>(bytes);
}

}  // namespace rwd
