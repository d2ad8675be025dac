// Metrics (base/metrics.h, ship/metrics_endpoint.h) and what a served volume reports
// (Served::metrics_text).
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <string>
#include <vector>

#include "rewind/base/clock.h"
#include "rewind/base/metrics.h"
#include "rewind/serve/serve_config.h"
#include "rewind/serve/served.h"
#include "rewind/ship/metrics_endpoint.h"
#include "rewind/volume/volume.h"
#include "test_util.h"

using namespace rwd;
using namespace rwd::test;
using namespace std::chrono_literals;

namespace {

// The first line of the answer to `request` sent to 127.0.0.1:port, and the body.
std::string ask(uint16_t port, const std::string& request, std::string* body = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "connect failed";
  }
  // A peer that closes with unread bytes resets the connection, and the reset can reach
  // us before its answer does; so every step must succeed for the answer to count.
  for (size_t done = 0; done < request.size();) {
    const ssize_t n = ::write(fd, request.data() + done, request.size() - done);
    if (n <= 0) {
      ::close(fd);
      return fmt::format("write failed: {}", std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  if (::shutdown(fd, SHUT_WR) != 0) {
    ::close(fd);
    return fmt::format("shutdown failed: {}", std::strerror(errno));
  }
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (body) {
    const size_t end = answer.find("\r\n\r\n");
    *body = end == std::string::npos ? "" : answer.substr(end + 4);
  }
  return answer.substr(0, answer.find("\r\n"));
}

// The value of the sample written exactly as `name_and_labels`, or "" if none.
std::string sample_of(const std::string& text, const std::string& name_and_labels) {
  const std::string key = "\n" + name_and_labels + " ";
  const size_t at = ("\n" + text).find(key);
  if (at == std::string::npos) return "";
  const size_t from = at + key.size() - 1;
  return text.substr(from, text.find('\n', from) - from);
}

}  // namespace

TEST_CASE("metrics: the text format escapes label values and writes each family once",
          "[metrics]") {
  MetricsText t;
  t.family("rewind_x_total", MetricsText::Type::kCounter, "Help with a \\ and\na newline.");
  t.sample("rewind_x_total", {{"volume", "a\"b\\c\nd"}}, uint64_t{7});
  t.sample("rewind_x_total", {{"volume", "plain"}}, 1.5);
  t.gauge("rewind_y_seconds", "A gauge.", 0.25);
  CHECK(t.text() ==
        "# HELP rewind_x_total Help with a \\\\ and\\na newline.\n"
        "# TYPE rewind_x_total counter\n"
        "rewind_x_total{volume=\"a\\\"b\\\\c\\nd\"} 7\n"
        "rewind_x_total{volume=\"plain\"} 1.5\n"
        "# HELP rewind_y_seconds A gauge.\n"
        "# TYPE rewind_y_seconds gauge\n"
        "rewind_y_seconds 0.25\n");
}

TEST_CASE("metrics: a histogram's buckets are cumulative and end in +Inf", "[metrics]") {
  DurationHistogram h({0.001, 0.01});
  h.observe(500us);  // <= 1 ms
  h.observe(1ms);    // <= 1 ms (a bound is inclusive)
  h.observe(5ms);    // <= 10 ms
  h.observe(2s);     // above every bound
  const auto s = h.snapshot();
  CHECK(s.cumulative == std::vector<uint64_t>{2, 3});
  CHECK(s.count == 4);
  CHECK(s.sum_seconds == Approx(2.0065));
  MetricsText t;
  t.histogram("rewind_wait_seconds", "Waits.", {{"volume", "v"}}, s);
  CHECK(sample_of(t.text(), "rewind_wait_seconds_bucket{volume=\"v\",le=\"0.001\"}") == "2");
  CHECK(sample_of(t.text(), "rewind_wait_seconds_bucket{volume=\"v\",le=\"0.01\"}") == "3");
  CHECK(sample_of(t.text(), "rewind_wait_seconds_bucket{volume=\"v\",le=\"+Inf\"}") == "4");
  CHECK(sample_of(t.text(), "rewind_wait_seconds_count{volume=\"v\"}") == "4");
  CHECK(sample_of(t.text(), "rewind_wait_seconds_sum{volume=\"v\"}") == "2.0065");
}

TEST_CASE("metrics: addresses are HOST:PORT, [IPv6]:PORT or a port on loopback", "[metrics]") {
  std::string host;
  uint16_t port = 1;
  REQUIRE(parse_metrics_address("9420", &host, &port));
  CHECK(host == "127.0.0.1");
  CHECK(port == 9420);
  REQUIRE(parse_metrics_address("0.0.0.0:0", &host, &port));
  CHECK(host == "0.0.0.0");
  CHECK(port == 0);
  REQUIRE(parse_metrics_address("[::1]:9", &host, &port));
  CHECK(host == "::1");
  CHECK(port == 9);
  for (const char* bad : {"", "x", ":9", "[::1", "h:", "h:65536", "h:-1", "h:9x", "[a]b]:1"}) {
    host = "kept";
    port = 7;
    Status st = parse_metrics_address(bad, &host, &port);
    CAPTURE(bad);
    CHECK_FALSE(st);
    CHECK(st.message().find("give HOST:PORT") != std::string::npos);
    CHECK(host == "kept");
    CHECK(port == 7);
  }
}

TEST_CASE("metrics: the endpoint serves GET /metrics and refuses the rest", "[metrics]") {
  auto e = MetricsEndpoint::listen("127.0.0.1:0", {});
  REQUIRE(e);
  const uint16_t port = (*e)->port();
  REQUIRE(port != 0);
  CHECK((*e)->url() == "http://127.0.0.1:" + std::to_string(port) + "/metrics");
  // A second endpoint on the same port is refused at once.
  auto again = MetricsEndpoint::listen("127.0.0.1:" + std::to_string(port), {});
  REQUIRE_FALSE(again);
  CHECK(again.status().message().find("cannot listen for metrics") != std::string::npos);
  int scrapes = 0;
  (*e)->start([&] { return "rewind_up " + std::to_string(++scrapes) + "\n"; });
  std::string body;
  CHECK(ask(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &body) == "HTTP/1.1 200 OK");
  CHECK(body == "rewind_up 1\n");
  CHECK(ask(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", &body) == "HTTP/1.0 200 OK");
  CHECK(body == "rewind_up 2\n");
  CHECK(ask(port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n") == "HTTP/1.1 404 Not Found");
  CHECK(ask(port, "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n") ==
        "HTTP/1.1 405 Method Not Allowed");
  CHECK(ask(port, "PUT /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n") ==
        "HTTP/1.1 405 Method Not Allowed");
  CHECK(ask(port, "nonsense\r\n\r\n") == "HTTP/1.1 400 Bad Request");
  CHECK(ask(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n") ==
        "HTTP/1.1 400 Bad Request");
  // Far more than the header limit: the answer still arrives whole, not as a reset.
  for (int i = 0; i < 20; ++i)
    CHECK(ask(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(256 << 10, 'a') + "\r\n\r\n") ==
          "HTTP/1.1 400 Bad Request");
  CHECK(scrapes == 2);
  (*e)->stop();
  CHECK(ask(port, "GET /metrics HTTP/1.1\r\n\r\n") == "connect failed");
}

TEST_CASE("metrics: a served volume counts its requests and bytes", "[metrics]") {
  TempDir dir;
  make_image(dir.path() + "/disk.img", 4 << 20);
  ServeConfig c;
  REQUIRE(set_serve_key(c, "image", dir.path() + "/disk.img"));
  REQUIRE(set_serve_key(c, "journal", dir.path() + "/disk.rewind"));
  REQUIRE(set_serve_key(c, "segment-size", "1M"));
  REQUIRE(set_serve_key(c, "journal-max", "64M"));
  Status configured = complete_serve_config(c, {});
  INFO(configured.message());
  REQUIRE(configured);
  auto s = Served::open(c, {});
  REQUIRE(s);
  REQUIRE((*s)->start());
  Volume& v = *(*s)->volume();
  const auto data = pattern(64 << 10, 1);
  for (int i = 0; i < 5; ++i) REQUIRE(v.write(data, static_cast<uint64_t>(i) << 16, false));
  REQUIRE(v.zero(1 << 20, 8192, false));
  REQUIRE(v.trim(2 << 20, 4096, true));
  REQUIRE(v.flush());
  std::vector<uint8_t> buf(4096);
  REQUIRE(v.read(buf, 0));
  REQUIRE_FALSE(v.write(data, 4 << 20, false));  // past the end: refused, not counted
  const uint64_t now = wall_clock_ns();
  const std::string t = (*s)->metrics_text(now);
  CAPTURE(t);
  CHECK(sample_of(t, R"(rewind_requests_total{volume="disk.rewind",type="write"})") == "5");
  CHECK(sample_of(t, R"(rewind_request_bytes_total{volume="disk.rewind",type="write"})") ==
        std::to_string(5 * data.size()));
  CHECK(sample_of(t, R"(rewind_requests_total{volume="disk.rewind",type="zero"})") == "1");
  CHECK(sample_of(t, R"(rewind_request_bytes_total{volume="disk.rewind",type="zero"})") == "8192");
  CHECK(sample_of(t, R"(rewind_request_bytes_total{volume="disk.rewind",type="trim"})") == "4096");
  CHECK(sample_of(t, R"(rewind_requests_total{volume="disk.rewind",type="flush"})") == "1");
  CHECK(sample_of(t, R"(rewind_request_bytes_total{volume="disk.rewind",type="read"})") == "4096");
  // The flush and the FUA trim waited for durability.
  CHECK(sample_of(t, R"(rewind_flush_duration_seconds_count{volume="disk.rewind"})") == "2");
  CHECK(sample_of(t, R"(rewind_last_seq{volume="disk.rewind"})") == "7");
  CHECK(sample_of(t, R"(rewind_durable_seq{volume="disk.rewind"})") == "7");
  CHECK(std::stoull(sample_of(t, R"(rewind_journal_bytes{volume="disk.rewind"})")) >
        5 * data.size());
  CHECK(sample_of(t, R"(rewind_journal_max_bytes{volume="disk.rewind"})") ==
        std::to_string(64 << 20));
  CHECK(sample_of(t, R"(rewind_retention_actions_total{volume="disk.rewind",action="fold"})") ==
        "0");
  CHECK(sample_of(t, R"(rewind_errors_total{volume="disk.rewind",kind="journal"})") == "0");
  // Not shipped: no shipping families.
  CHECK(t.find("rewind_ship_") == std::string::npos);
  // Restorable from when the volume was made.
  const double history = std::stod(sample_of(t, R"(rewind_history_seconds{volume="disk.rewind"})"));
  CHECK(history >= 0);
  CHECK(history < 60);
  // No path of the volume's.
  CHECK(t.find(dir.path()) == std::string::npos);
  REQUIRE((*s)->stop());
}
