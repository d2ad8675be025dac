#include "rewind/replay/target.h"

#include "rewind/base/units.h"

#include <time.h>

#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace rwd {

Target Target::at_seq(uint64_t s) {
  Target t;
  t.kind = Kind::kSeq;
  t.seq = s;
  t.text = fmt::format("seq {}", s);
  return t;
}

Target Target::at_time(uint64_t ns, std::string text) {
  Target t;
  t.kind = Kind::kTime;
  t.time_ns = ns;
  t.text = std::move(text);
  return t;
}

Target Target::at_mark(std::string name) {
  Target t;
  t.kind = Kind::kMark;
  t.text = "mark " + name;
  t.mark = std::move(name);
  return t;
}

namespace {

constexpr const char* kForms =
    "use RFC 3339 (2026-11-25T10:00:03.25Z or 2026-11-25T11:00:03+01:00), local time "
    "('2026-11-25 10:00:03[.frac]'), relative (-90s, -5m, -2h, -1d) or now";

// Reads exactly `n` digits at s[*i].
bool digits(std::string_view s, size_t* i, size_t n, int* out) {
  if (*i + n > s.size()) return false;
  int v = 0;
  for (size_t k = 0; k < n; ++k) {
    char c = s[*i + k];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *i += n;
  *out = v;
  return true;
}

bool expect(std::string_view s, size_t* i, char c) {
  if (*i < s.size() && s[*i] == c) {
    ++*i;
    return true;
  }
  return false;
}

// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// The digits of a fraction of a second at *i, as nanoseconds; false unless there are 1
// to 9 of them.
bool fraction_ns(std::string_view text, size_t* i, uint64_t* out) {
  const size_t start = *i;
  uint64_t scale = 100'000'000;
  *out = 0;
  while (*i < text.size() && text[*i] >= '0' && text[*i] <= '9') {
    *out += static_cast<uint64_t>(text[*i] - '0') * scale;
    scale /= 10;
    ++*i;
  }
  return *i != start && *i - start <= 9;
}

}  // namespace

Result<uint64_t> parse_time(std::string_view text, uint64_t now_ns) {
  auto bad = [&](const std::string& why) {
    return Status::invalid(fmt::format("'{}' is not a time{}; {}", text, why, kForms));
  };
  if (text == "now") return now_ns;
  if (!text.empty() && text[0] == '-') {
    // A duration before now: -90s, -5m, -2h, -1d (and the finer units durations take).
    auto back = parse_duration(text.substr(1));
    if (!back) return bad(" (a relative time is a minus sign and a duration, e.g. -5m)");
    auto ns = static_cast<uint64_t>(back->count());
    if (ns > now_ns) return bad(" (before 1970)");
    return now_ns - ns;
  }
  // YYYY-MM-DD(T| )HH:MM:SS[.frac][Z|±HH:MM]
  size_t i = 0;
  int year, mon, day, hour, min, sec;
  if (!digits(text, &i, 4, &year) || !expect(text, &i, '-') || !digits(text, &i, 2, &mon) ||
      !expect(text, &i, '-') || !digits(text, &i, 2, &day))
    return bad("");
  bool rfc = false;
  if (i < text.size() && (text[i] == 'T' || text[i] == 't')) {
    rfc = true;
    ++i;
  } else if (!expect(text, &i, ' ')) {
    return bad("");
  }
  if (!digits(text, &i, 2, &hour) || !expect(text, &i, ':') || !digits(text, &i, 2, &min) ||
      !expect(text, &i, ':') || !digits(text, &i, 2, &sec))
    return bad("");
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
    return bad(" (a field is out of range)");
  uint64_t frac_ns = 0;
  if (expect(text, &i, '.') && !fraction_ns(text, &i, &frac_ns))
    return bad(" (the fraction has 1 to 9 digits)");
  int64_t offset_s = 0;
  bool zoned = false;
  if (i < text.size()) {
    if (text[i] == 'Z' || text[i] == 'z') {
      ++i;
      zoned = true;
    } else if (text[i] == '+' || text[i] == '-') {
      int sign = text[i] == '+' ? 1 : -1;
      ++i;
      int zh, zm;
      if (!digits(text, &i, 2, &zh) || !expect(text, &i, ':') || !digits(text, &i, 2, &zm) ||
          zh > 23 || zm > 59)
        return bad(" (a zone is Z or ±HH:MM)");
      offset_s = sign * (zh * 3600 + zm * 60);
      zoned = true;
    }
  }
  if (i != text.size()) return bad("");
  if (rfc && !zoned) return bad(" (RFC 3339 needs a zone: Z or ±HH:MM)");
  int64_t secs;
  if (zoned) {
    secs = days_from_civil(year, static_cast<unsigned>(mon), static_cast<unsigned>(day)) * 86400 +
           hour * 3600 + min * 60 + sec - offset_s;
  } else {
    struct tm tm = {};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (t == static_cast<time_t>(-1)) return bad(" (not a valid local time)");
    secs = t;
  }
  if (secs < 0) return bad(" (before 1970)");
  return static_cast<uint64_t>(secs) * 1'000'000'000u + frac_ns;
}

Result<Target> make_target(const std::string& at, const std::string& seq, const std::string& mark,
                           uint64_t now_ns) {
  int given = !at.empty() + !seq.empty() + !mark.empty();
  if (given > 1) return Status::invalid("give only one of --at, --seq and --mark");
  if (!at.empty()) {
    auto t = parse_time(at, now_ns);
    if (!t) return t.status();
    return Target::at_time(*t, at);
  }
  if (!seq.empty()) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(seq.data(), seq.data() + seq.size(), v);
    if (ec != std::errc() || p != seq.data() + seq.size())
      return Status::invalid(
          fmt::format("'{}' is not a seq; give a record number (e.g. 4711)", seq));
    return Target::at_seq(v);
  }
  if (!mark.empty()) {
    REWIND_RETURN_IF_ERROR(check_mark_name(mark));
    return Target::at_mark(mark);
  }
  return Target::newest();
}

}  // namespace rwd
