// The wall clock records are stamped with: nanoseconds since the Unix epoch.
#pragma once

#include <time.h>

#include <cstdint>

namespace rwd {

inline uint64_t wall_clock_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace rwd
