#include <catch2/catch.hpp>

#include "rewind/base/log.h"
#include "rewind/base/units.h"

using namespace rwd;
using namespace std::chrono_literals;

TEST_CASE("durations parse with their units and refuse bare numbers", "[units]") {
  CHECK(*parse_duration("100ms") == 100ms);
  CHECK(*parse_duration("1.5s") == 1500ms);
  CHECK(*parse_duration("10m") == 600s);
  CHECK(*parse_duration("2h") == 7200s);
  CHECK(*parse_duration("1d") == 86400s);
  CHECK(*parse_duration("250us") == 250us);
  for (const char* bad : {"", "100", "ms", "-5s", "5 s", "5x", "1e99d"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_duration(bad).is_ok());
  }
}

TEST_CASE("sizes parse with binary suffixes", "[units]") {
  CHECK(*parse_size("512") == 512);
  CHECK(*parse_size("64M") == 64ull << 20);
  CHECK(*parse_size("1GiB") == 1ull << 30);
  CHECK(*parse_size("4K") == 4096);
  CHECK(*parse_size("1.5G") == 3ull << 29);
  for (const char* bad : {"", "M", "-1", "12Q", "0.3"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_size(bad).is_ok());
  }
}

TEST_CASE("printable escapes what could forge a log line", "[units][log]") {
  CHECK(rwd::printable("vol-1") == "vol-1");
  CHECK(rwd::printable("a\nrewind-server: forged") == "a\\x0arewind-server: forged");
  CHECK(rwd::printable(std::string("\x1b[2J\\\x7f\xff", 7)) == "\\x1b[2J\\\\\\x7f\\xff");
}
