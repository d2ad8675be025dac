// Point-in-time targets: which prefix of the journal a restore, a view or a diff means.
//   --at TIME   every record with time_ns <= TIME
//   --seq N     every record with seq <= N
//   --mark NAME every record up to and including that mark
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "rewind/base/status.h"
#include "rewind/format/record.h"

namespace rwd {

struct Target {
  enum class Kind { kNewest, kSeq, kTime, kMark };
  Kind kind = Kind::kNewest;
  uint64_t seq = 0;
  uint64_t time_ns = 0;
  std::string mark;
  std::string text;  // as the user wrote it, for messages

  static Target newest() { return Target{}; }
  static Target at_seq(uint64_t s);
  static Target at_time(uint64_t t, std::string text);
  static Target at_mark(std::string name);
};

// Parses a time as DESIGN.md specifies, relative to `now_ns`:
//   RFC 3339 with optional fraction and zone: 2026-11-25T10:00:03.25Z, ...+01:00
//   local time: 2026-11-25 10:00:03[.frac]       (the TZ of this process)
//   relative:   -90s, -5m, -2h, -1d               (before now)
//   now
// Errors list the accepted forms.
Result<uint64_t> parse_time(std::string_view text, uint64_t now_ns);

// A target from exactly one of the three option values (empty = not given); none
// given means the newest state.
Result<Target> make_target(const std::string& at, const std::string& seq, const std::string& mark,
                           uint64_t now_ns);

}  // namespace rwd
