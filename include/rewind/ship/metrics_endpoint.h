// The HTTP endpoint of the plugin's metrics= and rewind-server --metrics: GET (or
// HEAD) /metrics answers with what `render` returns, in Prometheus' text format
// (docs/METRICS.md). Anything else gets 404 or 405, a malformed request 400.
//
// One thread of its own (rewind-metrics) serves it with Boost.Asio and Beast's HTTP
// parser: a scrape never runs on, or waits for, the write path; `render` reads
// counters and snapshots. At most 16 connections are open at once, a request's header
// is at most 8 KiB and must arrive within 5 s, and no request has a body: a peer
// cannot hold the endpoint or grow its memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "rewind/base/log.h"
#include "rewind/base/status.h"

namespace rwd {

// HOST:PORT or [IPv6]:PORT, or PORT alone for 127.0.0.1:PORT (loopback by default);
// PORT 0 lets the system choose one. An error says what is wrong and changes nothing.
Status parse_metrics_address(std::string_view text, std::string* host, uint16_t* port);

class MetricsEndpoint {
 public:
  using Render = std::function<std::string()>;
  // Binds and listens at `address` (parse_metrics_address) at once, so that a port in
  // use fails here (before nbdkit forks, for the plugin); answers only after start().
  static Result<std::unique_ptr<MetricsEndpoint>> listen(std::string_view address, Logger logger);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // The address and port bound (the one given, or the one the system chose for 0).
  const std::string& host() const;
  uint16_t port() const;
  // http://HOST:PORT/metrics (an IPv6 address in brackets).
  std::string url() const;
  // Starts the thread; `render` runs on it, once per scrape.
  void start(Render render);
  // Stops the thread and closes the socket; connections open are dropped.
  void stop();

  struct Impl;

 private:
  explicit MetricsEndpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rwd
