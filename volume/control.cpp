#include "rewind/volume/control.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <thread>

#include <fmt/format.h>

namespace rwd {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {

// One client connection: read a line, answer it, repeat; closed when idle too long,
// on an oversized request, or when the peer goes away (mid-message included).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(local::socket sock, const ControlServer::Handler& handler)
      : sock_(std::move(sock)),
        timer_(sock_.get_executor()),
        buf_(ControlServer::kMaxRequest + 1),
        handler_(handler) {}

  void start() { read(); }
  void close() {
    boost::system::error_code ignored;
    timer_.cancel();
    sock_.close(ignored);
  }

 private:
  void read() {
    auto self = shared_from_this();
    timer_.expires_after(ControlServer::kIdleTimeout);
    timer_.async_wait([self](boost::system::error_code ec) {
      if (!ec) self->close();
    });
    asio::async_read_until(sock_, buf_, '\n', [self](boost::system::error_code ec, size_t n) {
      if (ec == asio::error::not_found) {
        self->answer_and_close(
            fmt::format("ERR request longer than {} bytes", ControlServer::kMaxRequest));
        return;
      }
      if (ec) {
        self->close();
        return;
      }
      std::string line(asio::buffers_begin(self->buf_.data()),
                       asio::buffers_begin(self->buf_.data()) + n - 1);
      self->buf_.consume(n);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::string answer = self->handler_(line) + "\n";
      self->out_ = std::move(answer);
      asio::async_write(self->sock_, asio::buffer(self->out_),
                        [self](boost::system::error_code wec, size_t) {
                          if (wec)
                            self->close();
                          else
                            self->read();
                        });
    });
  }

  void answer_and_close(std::string answer) {
    auto self = shared_from_this();
    out_ = answer + "\n";
    asio::async_write(sock_, asio::buffer(out_),
                      [self](boost::system::error_code, size_t) { self->close(); });
  }

  local::socket sock_;
  asio::steady_timer timer_;
  asio::streambuf buf_;
  std::string out_;
  const ControlServer::Handler& handler_;
};

}  // namespace

struct ControlServer::Impl {
  asio::io_context io;
  local::acceptor acceptor{io};
  std::thread thread;
  std::string path;
  Handler handler;
  Logger logger;

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, local::socket sock) {
      if (!acceptor.is_open()) return;
      if (!ec) std::make_shared<Session>(std::move(sock), handler)->start();
      accept();
    });
  }
};

ControlServer::ControlServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ControlServer::~ControlServer() {
  stop();
}

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path,
                                                            Handler handler, Logger logger) {
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return Status::invalid(
        fmt::format("control socket path {} is longer than {} bytes; give a shorter "
                    "control=PATH",
                    path, sizeof(sockaddr_un::sun_path) - 1));
  if (::access(path.c_str(), F_OK) == 0) {
    // A server that answers owns it; a file nobody answers on is left from a crash.
    auto probe = control_request(path, "STATUS", std::chrono::milliseconds(500));
    if (probe)
      return Status::busy(fmt::format("control socket {} is in use by another server", path));
    ::unlink(path.c_str());
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->handler = std::move(handler);
  impl->logger = std::move(logger);
  boost::system::error_code ec;
  impl->acceptor.open(local(), ec);
  if (!ec) impl->acceptor.bind(local::endpoint(path), ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::io_error(fmt::format("cannot listen on control socket {}", path), ec.value());
  impl->accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    ::pthread_setname_np(::pthread_self(), "rewind-control");
    for (;;) {
      try {
        raw->io.run();
        return;
      } catch (const std::exception& e) {
        log_to(raw->logger, LogLevel::kWarning, fmt::format("control socket: {}", e.what()));
      }
    }
  });
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(impl)));
}

void ControlServer::stop() {
  if (!impl_) return;
  asio::post(impl_->io, [this] {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
  });
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  ::unlink(impl_->path.c_str());
  impl_.reset();
}

Result<std::string> control_request(const std::string& path, const std::string& request,
                                    std::chrono::milliseconds timeout) {
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return Status::invalid(fmt::format("control socket path {} is too long", path));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::io_error("cannot create a socket", errno);
  struct timeval tv;
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  auto fail = [&](const std::string& what) {
    int err = errno;
    ::close(fd);
    return Status::io_error(fmt::format("{} control socket {}", what, path), err);
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return fail("cannot connect to");
  std::string line = request + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot send to");
    }
    done += static_cast<size_t>(n);
  }
  std::string answer;
  char c;
  for (;;) {
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno == EAGAIN ? "no answer in time from" : "cannot read from");
    if (n == 0) {
      ::close(fd);
      return Status::io_error(fmt::format("control socket {} closed the connection", path), EPIPE);
    }
    if (c == '\n') break;
    answer += c;
    if (answer.size() > 64 * 1024) {
      ::close(fd);
      return Status::corruption(fmt::format("control socket {} sent an oversized answer", path));
    }
  }
  ::close(fd);
  return answer;
}

}  // namespace rwd
