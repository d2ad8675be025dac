#include <chrono>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rewind/ship/shipper.h"

namespace rwd {

nlohmann::ordered_json ship_status_json(const ShipperStatus& s, const ShipperOptions& o) {
  // Fractions to the millisecond: what a reader needs, and short to print.
  const auto ms = [](double v) { return std::round(v * 1000) / 1000; };
  return {{"server", o.bucket ? o.bucket->uri() : fmt::format("{}:{}", o.link.host, o.link.port)},
          {"volume", o.link.volume},
          {"connected", s.connected},
          {"phase", s.phase},
          {"acked_seq", s.acked_seq},
          {"durable_seq", s.durable_seq},
          {"lag_bytes", s.lag_bytes},
          {"lag_seconds", ms(s.lag_seconds)},
          {"wire_bytes", s.wire_bytes},
          {"record_bytes", s.record_bytes},
          {"window", s.window},
          {"rtt_ms", ms(s.rtt_ms)},
          {"backoffs", s.backoffs},
          {"reconnects", s.reconnects},
          {"requests", s.requests},
          {"rate_cap", o.rate},
          {"lag_warn_s", std::chrono::duration_cast<std::chrono::seconds>(o.lag_warn).count()},
          // Invalid UTF-8 in an error message (a peer's bytes) is replaced, not thrown on.
          {"error", s.error}};
}

double lag_seconds_at(uint64_t oldest_ns, uint64_t now_ns) {
  return oldest_ns != 0 && now_ns > oldest_ns ? static_cast<double>(now_ns - oldest_ns) / 1e9 : 0;
}

}  // namespace rwd
