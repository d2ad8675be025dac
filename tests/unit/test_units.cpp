#include <catch2/catch.hpp>

#include <array>
#include <random>

#include "rewind/base/hex.h"
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

TEST_CASE("hex text round-trips and anything else is refused", "[units]") {
  std::mt19937_64 rng(5);
  for (size_t n : {0, 1, 8, 16, 32}) {
    std::vector<uint8_t> bytes(n), back(n);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    const std::string text = hex_of(bytes);
    CHECK(text.size() == 2 * n);
    CHECK(parse_hex(text, back));
    CHECK(back == bytes);
  }
  std::array<uint8_t, 2> out{};
  CHECK(parse_hex("0aff", out));
  CHECK((out == std::array<uint8_t, 2>{0x0a, 0xff}));
  CHECK_FALSE(parse_hex("0AFF", out));  // uppercase only when asked for
  CHECK(parse_hex("0AfF", out, true));
  CHECK((out == std::array<uint8_t, 2>{0x0a, 0xff}));
  for (const char* bad : {"", "0af", "0aff0", "0ag0", " 0af", "0x0a", "+0af"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_hex(bad, out, true));
  }
}
