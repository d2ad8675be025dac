// Parsing of the units users type: durations ("100ms", "10m") and sizes ("64M").
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "rewind/base/status.h"

namespace rwd {

// A number with a unit: ns, us, ms, s, m, h, d ("250ms", "1.5s", "10m"). No unit is
// an error, since a bare number is ambiguous.
Result<std::chrono::nanoseconds> parse_duration(std::string_view text);

// A number with an optional binary suffix: none (bytes), K, M, G, T, P (powers of
// 1024), optionally followed by "B" or "iB" ("64M", "1GiB", "512").
Result<uint64_t> parse_size(std::string_view text);

// "1.5 GiB", "512 B"
std::string format_size(uint64_t bytes);
// "2.3s", "150ms", "4m05s"
std::string format_duration(std::chrono::nanoseconds d);

}  // namespace rwd
