#include "rewind/base/units.h"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace rwd {

namespace {
// Splits "1.5ms" into 1.5 and "ms". Returns false if there is no leading number.
bool split_number(std::string_view text, double* value, std::string_view* unit) {
  size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0) return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + i, *value);
  if (ec != std::errc() || p != text.data() + i || !std::isfinite(*value)) return false;
  *unit = text.substr(i);
  return true;
}
}  // namespace

Result<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  double v = 0;
  std::string_view unit;
  auto bad = [&] {
    return Status::invalid(
        fmt::format("'{}' is not a duration; use a number and a unit: ns, us, ms, s, m, h or d "
                    "(e.g. 100ms, 10m)",
                    text));
  };
  if (!split_number(text, &v, &unit)) return bad();
  double scale;
  if (unit == "ns")
    scale = 1;
  else if (unit == "us")
    scale = 1e3;
  else if (unit == "ms")
    scale = 1e6;
  else if (unit == "s")
    scale = 1e9;
  else if (unit == "m" || unit == "min")
    scale = 60e9;
  else if (unit == "h")
    scale = 3600e9;
  else if (unit == "d")
    scale = 86400e9;
  else
    return bad();
  double ns = v * scale;
  if (ns > 9e18) return Status::invalid(fmt::format("duration '{}' is too long", text));
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(ns)));
}

Result<uint64_t> parse_size(std::string_view text) {
  double v = 0;
  std::string_view unit;
  auto bad = [&] {
    return Status::invalid(fmt::format(
        "'{}' is not a size; use a number with an optional K, M, G or T suffix (e.g. 64M, 1G)",
        text));
  };
  if (!split_number(text, &v, &unit)) return bad();
  if (unit.ends_with("iB"))
    unit.remove_suffix(2);
  else if (unit.size() == 2 && unit.back() == 'B')
    unit.remove_suffix(1);
  else if (unit == "B")
    unit = "";
  double scale;
  if (unit.empty())
    scale = 1;
  else if (unit == "K" || unit == "k")
    scale = 0x1p10;
  else if (unit == "M")
    scale = 0x1p20;
  else if (unit == "G")
    scale = 0x1p30;
  else if (unit == "T")
    scale = 0x1p40;
  else if (unit == "P")
    scale = 0x1p50;
  else
    return bad();
  double bytes = v * scale;
  if (bytes >= 0x1p63) return Status::invalid(fmt::format("size '{}' is too large", text));
  if (bytes != std::floor(bytes))
    return Status::invalid(fmt::format("size '{}' is not a whole number of bytes", text));
  return static_cast<uint64_t>(bytes);
}

std::string format_size(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.1f} {}", v, units[u]);
}

std::string format_duration(std::chrono::nanoseconds d) {
  double s = static_cast<double>(d.count()) / 1e9;
  if (s < 1e-3) return fmt::format("{}us", d.count() / 1000);
  if (s < 1) return fmt::format("{:.0f}ms", s * 1e3);
  if (s < 60) return fmt::format("{:.1f}s", s);
  auto total = static_cast<uint64_t>(s);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  if (total < 86400) return fmt::format("{}h{:02}m", total / 3600, total % 3600 / 60);
  return fmt::format("{}d{:02}h", total / 86400, total % 86400 / 3600);
}

}  // namespace rwd
