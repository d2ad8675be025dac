#include <catch2/catch.hpp>

#include <stdlib.h>
#include <time.h>

#include "rewind/replay/target.h"

using namespace rwd;

namespace {
constexpr uint64_t kNow = 1795596003250000000ull;  // 2026-11-25T08:40:03.250Z
constexpr uint64_t kSec = 1'000'000'000ull;
}  // namespace

TEST_CASE("RFC 3339 times with fractions and zones", "[time]") {
  CHECK(*parse_time("2026-11-25T08:40:03.25Z", kNow) == kNow);
  CHECK(*parse_time("2026-11-25T08:40:03.250000000Z", kNow) == kNow);
  CHECK(*parse_time("2026-11-25T09:40:03.25+01:00", kNow) == kNow);
  CHECK(*parse_time("2026-11-25T03:10:03.25-05:30", kNow) == kNow);
  CHECK(*parse_time("2026-11-25t08:40:03z", kNow) == kNow - kSec / 4);
  CHECK(*parse_time("1970-01-01T00:00:00Z", kNow) == 0);
  CHECK(*parse_time("2024-02-29T00:00:00Z", kNow) == 1709164800ull * kSec);
}

TEST_CASE("local times use the process time zone", "[time]") {
  ::setenv("TZ", "Europe/Berlin", 1);
  ::tzset();
  CHECK(*parse_time("2026-11-25 09:40:03.25", kNow) == kNow);  // CET is UTC+1 in November
  ::setenv("TZ", "UTC", 1);
  ::tzset();
  CHECK(*parse_time("2026-11-25 08:40:03.25", kNow) == kNow);
}

TEST_CASE("relative times and now", "[time]") {
  CHECK(*parse_time("now", kNow) == kNow);
  CHECK(*parse_time("-90s", kNow) == kNow - 90 * kSec);
  CHECK(*parse_time("-5m", kNow) == kNow - 300 * kSec);
  CHECK(*parse_time("-2h", kNow) == kNow - 7200 * kSec);
  CHECK(*parse_time("-1d", kNow) == kNow - 86400 * kSec);
  CHECK(*parse_time("-1.5s", kNow) == kNow - 3 * kSec / 2);
}

TEST_CASE("malformed times are refused with the accepted forms", "[time]") {
  for (const char* bad :
       {"", "yesterday", "2026-11-25", "2026-11-25T08:40:03", "2026-13-01T00:00:00Z",
        "2026-11-25T25:00:00Z", "2026-11-25T08:40:03.Z", "2026-11-25T08:40:03+1", "-5", "-5x", "5m",
        "2026-11-25 08:40:03 extra", "2026-11-25T08:40:03.1234567890Z"}) {
    CAPTURE(bad);
    auto r = parse_time(bad, kNow);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().message().find("RFC 3339") != std::string::npos);
    CHECK(r.status().message().find("-90s") != std::string::npos);
  }
}

TEST_CASE("targets come from exactly one option", "[target]") {
  CHECK(make_target("", "", "", kNow)->kind == Target::Kind::kNewest);
  CHECK(make_target("", "42", "", kNow)->seq == 42);
  CHECK(make_target("", "", "before-upgrade", kNow)->mark == "before-upgrade");
  CHECK(make_target("now", "", "", kNow)->time_ns == kNow);
  CHECK_FALSE(make_target("now", "1", "", kNow).is_ok());
  CHECK_FALSE(make_target("", "12abc", "", kNow).is_ok());
  CHECK_FALSE(make_target("", "", "has space", kNow).is_ok());
}
