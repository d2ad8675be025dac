// Fuzzes the parsers of what users type: times (RFC 3339, relative, epoch), durations
// and sizes. Each input is parsed or refused with an error, never a crash or UB.
#include <cstdint>
#include <string>

#include "rewind/base/units.h"
#include "rewind/replay/target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const uint64_t now = 1'780'000'000'000'000'000ull;
  (void)rwd::parse_time(text, now);
  (void)rwd::parse_duration(text);
  (void)rwd::parse_size(text);
  std::string s(text);
  (void)rwd::make_target(s, "", "", now);
  (void)rwd::make_target("", s, "", now);
  return 0;
}
