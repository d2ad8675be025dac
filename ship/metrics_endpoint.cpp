#include "rewind/ship/metrics_endpoint.h"

#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <exception>
#include <thread>

#include <fmt/format.h>
#include <boost/asio.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace rwd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr unsigned kMaxConnections = 16;
constexpr uint32_t kMaxHeader = 8 << 10;
constexpr std::chrono::seconds kRequestTimeout{5};
// After answering: how long, and how many bytes, to read and drop before closing.
constexpr std::chrono::seconds kLingerTimeout{2};
constexpr size_t kLingerBytes = 1 << 20;

}  // namespace

Status parse_metrics_address(std::string_view text, std::string* host, uint16_t* port) {
  const auto bad = [&](const char* why) {
    return Status::invalid(fmt::format(
        "metrics address '{}': {}; give HOST:PORT, [IPv6]:PORT or PORT alone (127.0.0.1), "
        "e.g. 127.0.0.1:9420",
        text, why));
  };
  std::string_view h = "127.0.0.1", p = text;
  const size_t colon = text.rfind(':');
  if (colon != std::string_view::npos) {
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    if (h.empty()) return bad("no host");
    if (h.find_first_of("[]") != std::string_view::npos) return bad("bad host");
  }
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (p.empty() || ec != std::errc() || end != p.data() + p.size() || value > 65535)
    return bad("bad port");
  *host = std::string(h);
  *port = static_cast<uint16_t>(value);
  return Status::ok();
}

struct MetricsEndpoint::Impl {
  std::string host;
  uint16_t port = 0;
  int fd = -1;  // the listening socket until start() hands it to the acceptor
  int family = AF_INET;
  Logger logger;
  Render render;
  // Built in start(), after nbdkit's fork: an io_context made before it would share
  // its epoll instance with the parent.
  std::unique_ptr<asio::io_context> io;
  std::unique_ptr<tcp::acceptor> acceptor;
  unsigned open = 0;  // connections open (the io thread's only)
  std::thread thread;

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket socket);
  http::response<http::string_body> answer(const http::request<http::empty_body>& req);
};

http::response<http::string_body> MetricsEndpoint::Impl::answer(
    const http::request<http::empty_body>& req) {
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(false);
  res.set(http::field::server, "rewind");
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET, HEAD");
    res.body() = "only GET and HEAD are served\n";
  } else if (path != "/metrics") {
    res.result(http::status::not_found);
    res.body() = "the metrics are at /metrics\n";
  } else {
    try {
      res.body() = render();
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    } catch (const std::exception& e) {
      log_to(logger, LogLevel::kWarning, fmt::format("metrics: rendering failed: {}", e.what()));
      res.result(http::status::internal_server_error);
      res.body() = "rendering the metrics failed; see the log\n";
    }
  }
  res.prepare_payload();
  if (req.method() == http::verb::head) res.body().clear();
  return res;
}

asio::awaitable<void> MetricsEndpoint::Impl::serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  try {
    beast::flat_buffer buf(kMaxHeader);
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kMaxHeader);
    parser.body_limit(0);
    stream.expires_after(kRequestTimeout);
    http::response<http::string_body> res;
    beast::error_code ec;
    co_await http::async_read(stream, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == beast::error::timeout || ec == http::error::end_of_stream ||
          ec == asio::error::eof || ec == asio::error::connection_reset)
        throw beast::system_error(ec);
      res.version(11);
      res.keep_alive(false);
      res.result(http::status::bad_request);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "malformed request: " + ec.message() + "\n";
      res.prepare_payload();
    } else {
      res = answer(parser.get());
    }
    stream.expires_after(kRequestTimeout);
    co_await http::async_write(stream, res, asio::use_awaitable);
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    // A lingering close: a socket closed with bytes unread resets the connection, and
    // the reset can overtake the answer (a 400 to an oversized header would never
    // arrive). So read what the peer still sends, within a bound, until it closes.
    stream.expires_after(kLingerTimeout);
    std::array<char, 4096> scratch;
    for (size_t drained = 0; drained < kLingerBytes;)
      drained += co_await stream.async_read_some(asio::buffer(scratch), asio::use_awaitable);
  } catch (const std::exception&) {
    // The peer closed (the end of a lingering close), went away or stalled.
  }
  --open;
}

asio::awaitable<void> MetricsEndpoint::Impl::accept_loop() {
  for (;;) {
    tcp::socket socket(*io);
    beast::error_code ec;
    co_await acceptor->async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // a connection reset before it was taken, or out of descriptors
    if (open >= kMaxConnections) continue;  // closed here: scrapes come one at a time
    ++open;
    asio::co_spawn(*io, serve(std::move(socket)), asio::detached);
  }
}

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::listen(std::string_view address,
                                                                 Logger logger) {
  auto impl = std::make_unique<Impl>();
  REWIND_RETURN_IF_ERROR(parse_metrics_address(address, &impl->host, &impl->port));
  impl->logger = std::move(logger);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(impl->port);
  if (int rc = ::getaddrinfo(impl->host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return Status::invalid(fmt::format("metrics address {}: {}; give an address of this machine",
                                       address, ::gai_strerror(rc)));
  int err = 0;
  for (addrinfo* ai = found; ai && impl->fd < 0; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
      err = errno;
      ::close(fd);
      continue;
    }
    impl->fd = fd;
    impl->family = ai->ai_family;
  }
  ::freeaddrinfo(found);
  if (impl->fd < 0)
    return Status::io_error(
        fmt::format("cannot listen for metrics on {}: {}; give a free port or another address",
                    address, std::strerror(err)),
        err);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(impl->fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0)
    impl->port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint(std::move(impl)));
}

MetricsEndpoint::MetricsEndpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsEndpoint::~MetricsEndpoint() {
  stop();
}

const std::string& MetricsEndpoint::host() const {
  return impl_->host;
}

uint16_t MetricsEndpoint::port() const {
  return impl_->port;
}

std::string MetricsEndpoint::url() const {
  const bool v6 = impl_->host.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}/metrics", v6 ? "[" : "", impl_->host, v6 ? "]" : "",
                     impl_->port);
}

void MetricsEndpoint::start(Render render) {
  if (impl_->thread.joinable() || impl_->fd < 0) return;
  impl_->render = std::move(render);
  impl_->io = std::make_unique<asio::io_context>(1);
  impl_->acceptor = std::make_unique<tcp::acceptor>(*impl_->io);
  beast::error_code ec;
  impl_->acceptor->assign(impl_->family == AF_INET6 ? tcp::v6() : tcp::v4(), impl_->fd, ec);
  if (ec) {
    log_to(
        impl_->logger, LogLevel::kError,
        fmt::format("metrics: cannot serve on {}:{}: {}", impl_->host, impl_->port, ec.message()));
    return;
  }
  impl_->fd = -1;  // the acceptor's now
  asio::co_spawn(*impl_->io, impl_->accept_loop(), asio::detached);
  Impl* raw = impl_.get();
  impl_->thread = std::thread([raw] {
    ::pthread_setname_np(::pthread_self(), "rewind-metrics");
    for (;;) {
      try {
        raw->io->run();
        return;
      } catch (const std::exception& e) {
        log_to(raw->logger, LogLevel::kWarning, fmt::format("metrics: {}", e.what()));
      }
    }
  });
}

void MetricsEndpoint::stop() {
  if (!impl_ || !impl_->io) return;
  impl_->io->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->acceptor.reset();
  impl_->io.reset();  // drops the connections' coroutines
}

}  // namespace rwd
