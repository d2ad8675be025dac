// <utility> first: Boost 1.74's awaitable.hpp uses std::exchange without including it.
#include <utility>

#include "rewind/ship/server.h"

#include <boost/asio.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "rewind/base/clock.h"
#include "rewind/base/file.h"
#include "rewind/format/file_names.h"
#include "rewind/format/manifest.h"
#include "rewind/format/segment.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/view.h"
#include "rewind/ship/bucket_reader.h"
#include "rewind/ship/bucket_store.h"
#include "rewind/ship/metrics_endpoint.h"
#include "rewind/ship/protocol.h"
#include "rewind/ship/ship_client.h"
#include "rewind/ship/store.h"
#include "rewind/ship/tokens.h"
#include "server_metrics.h"
#include "tls_client.h"

namespace rwd {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using proto::ErrorCode;
using proto::MessageType;

namespace {

// Why a peer is turned away: the ERROR it is sent before the connection closes.
struct Refusal {
  ErrorCode code;
  std::string why;
};

// What a connection's coroutine and the rest of the server share. Touched on the
// connection's strand only: `done` once the connection's frame is gone, `revoked` when
// a token reload took its rights (the watchdog then closes the socket).
struct ConnState {
  bool done = false;
  bool revoked = false;
};

}  // namespace

class Server::Impl {
 public:
  Impl(const ServerOptions& opts, Logger logger)
      : opts_(opts),
        logger_(std::move(logger)),
        acceptor_(io_),
        tls_(ssl::context::tls_server),
        signals_(io_, SIGINT, SIGTERM, SIGHUP) {}

  Status init();
  void run();
  void stop() { io_.stop(); }
  Status reload_tokens();
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string metrics_url() const { return endpoint_ ? endpoint_->url() : std::string(); }

 private:
  asio::awaitable<void> accept_loop();
  // Counts a new connection from `address` against --max-connections and
  // --max-per-address; false (and nothing counted) when either is reached.
  bool count_connection(const std::string& address, const std::string& peer);
  void release_connection(const std::string& address);
  asio::awaitable<void> handle(tcp::socket socket, std::string address, std::string peer);
  void watch_signals();
  template <class Stream>
  asio::awaitable<void> serve(Stream& s, asio::steady_timer& timer, std::shared_ptr<ConnState> conn,
                              std::string peer, asio::steady_timer::time_point hello_deadline);
  // Sessions by id, so that a token reload can take the rights of those whose token
  // no longer grants what they do.
  struct Session {
    std::string token, volume, peer;
    proto::Purpose purpose;
    std::function<void()> revoke;
  };
  struct Sessions {
    std::mutex mu;
    std::map<uint64_t, Session> by_id;
    uint64_t next = 0;
  };
  uint64_t add_session(Session s);
  void revoke_lost_rights(const TokenTable& tokens);
  // The HELLO that opens a connection, or why the peer is turned away: not a HELLO,
  // no version in common, a token that does not grant the volume, or (to ship) one
  // that grants reading only.
  std::optional<Refusal> admit(const proto::Frame& first, proto::Hello* hello);
  template <class W>
  asio::awaitable<void> read(W& wire, const proto::Hello& hello);
  // `bucket`: the journal in `dir` is the cache of a volume in a bucket store.
  template <class W>
  asio::awaitable<std::optional<Refusal>> send_report(W& wire, const std::string& dir,
                                                      const BucketCache* bucket,
                                                      const proto::Frame& f);
  template <class W>
  asio::awaitable<std::optional<Refusal>> send_view(W& wire, const std::string& dir,
                                                    std::shared_ptr<BucketCache> bucket,
                                                    const proto::Frame& f);
  // Answers a FETCH with the volume as stored: BASE_BEGIN, the base's runs, RECORDS,
  // END (a reader of a sealed copy opens it with its key).
  template <class W>
  asio::awaitable<std::optional<Refusal>> send_stored(W& wire, const std::string& dir,
                                                      const BucketCache* bucket,
                                                      const proto::Hello& hello);
  // Opens volume `name` of the store to ship into it; *code says how to refuse it.
  Result<std::unique_ptr<ReceivingVolume>> open_volume(const std::string& name, ErrorCode* code);
  // What peers are not told: the store's path (or bucket) and the cache's.
  std::vector<std::string> private_prefixes() const;
  template <class W>
  asio::awaitable<void> ship(W& wire, const proto::Hello& hello);
  // Whether the token still grants shipping, and the frame fits the volume's quota
  // given the bytes of the store it takes (*used, measured on the first frame a quota
  // applies to); else the refusal.
  std::optional<Refusal> within_grant(const proto::Hello& hello, const proto::Frame& f,
                                      const ReceivingVolume& vol, std::optional<uint64_t>* used);
  std::shared_ptr<const TokenTable> tokens() {
    std::lock_guard lk(mu_);
    return tokens_;
  }
  void log(LogLevel level, const std::string& msg) { log_to(logger_, level, msg); }

  ServerOptions opts_;
  Logger logger_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  ssl::context tls_;
  bool use_tls_ = true;
  asio::signal_set signals_;
  std::mutex conn_mu_;  // guards connections_ and per_address_
  unsigned connections_ = 0;
  std::map<std::string, unsigned> per_address_;
  std::mutex mu_;  // guards tokens_
  std::shared_ptr<const TokenTable> tokens_;
  // The volumes with a shipper connected. Shared with the connections: a connection
  // suspended when the server stops is destroyed with the io_context, after the
  // members declared later than it.
  struct Shipping {
    std::mutex mu;
    std::set<std::string> volumes;
  };
  std::shared_ptr<Shipping> shipping_ = std::make_shared<Shipping>();
  // The sessions open (shared with the connections, as shipping_ is).
  std::shared_ptr<Sessions> sessions_ = std::make_shared<Sessions>();
  // With --store s3://: the bucket and the cache directory.
  std::optional<BucketStoreOptions> bucket_;
  std::atomic<uint64_t> reads_{0};  // names the readers' caches
  // --metrics: what the connections count (shared with them, as sessions_ is), and
  // the endpoint that serves it.
  std::shared_ptr<ServerMetrics> metrics_ = std::make_shared<ServerMetrics>();
  std::unique_ptr<MetricsEndpoint> endpoint_;
};

namespace {

// A frame stream over a connection: reads whole frames, each read bounded by the
// idle timeout (or, until the HELLO is accepted, by one deadline that a trickle of
// bytes does not extend, and to frames of a HELLO's size), writes frames, and turns a
// peer away with a reason that is also logged (naming the peer and, once known, the
// volume). Counts the bytes each way for the session's audit line.
template <class Stream>
class Wire {
 public:
  Wire(Stream& s, asio::steady_timer& timer, std::chrono::nanoseconds idle,
       asio::steady_timer::time_point hello_deadline, std::string peer,
       std::vector<std::string> private_prefixes, const Logger& logger, ServerMetrics& metrics)
      : s_(s),
        timer_(timer),
        idle_(idle),
        deadline_(hello_deadline),
        peer_(std::move(peer)),
        private_prefixes_(std::move(private_prefixes)),
        logger_(logger),
        metrics_(metrics) {
    dec_.set_limit(proto::kMaxHelloPayload);
  }

  const std::string& peer() const { return peer_; }
  const std::string& volume() const { return volume_; }
  // The HELLO was accepted: frames of any size, each read bounded by the idle timeout.
  void authenticated(const std::string& volume) {
    volume_ = volume;
    deadline_.reset();
    dec_.set_limit(proto::kMaxPayload);
  }
  uint64_t bytes_in() const { return in_; }
  uint64_t bytes_out() const { return out_; }
  const std::string& outcome() const { return outcome_; }
  // Whether more of the peer's bytes are here already: part of a frame decoded, or
  // bytes waiting in the socket.
  bool more_coming() {
    boost::system::error_code ec;
    return dec_.pending() > 0 || s_.lowest_layer().available(ec) > 0;
  }

  // The next frame; a status for a stream that is not the protocol (refusal_of says
  // how to answer it). Throws on I/O errors and when the peer stalls (the timer
  // closes the connection).
  asio::awaitable<Result<proto::Frame>> read() {
    for (;;) {
      proto::Frame f;
      auto got = dec_.next(&f);
      if (!got) co_return got.status();
      if (*got) co_return f;
      if (deadline_)
        timer_.expires_at(*deadline_);
      else
        timer_.expires_after(idle_);
      const size_t n = co_await s_.async_read_some(asio::buffer(buf_), asio::use_awaitable);
      timer_.expires_at(asio::steady_timer::time_point::max());
      in_ += n;
      dec_.feed(std::span<const uint8_t>(buf_.data(), n));
    }
  }
  // The answer to a read() that failed: TOO_LARGE for a frame over the limit,
  // MALFORMED for any other stream that is not the protocol.
  Refusal refusal_of(const Status& read_error) const {
    return {dec_.failure(), read_error.message()};
  }

  asio::awaitable<void> send(MessageType type, const std::vector<uint8_t>& payload) {
    auto frame = proto::encode_frame(type, payload);
    timer_.expires_after(idle_);
    co_await asio::async_write(s_, asio::buffer(frame), asio::use_awaitable);
    timer_.expires_at(asio::steady_timer::time_point::max());
    out_ += frame.size();
  }
  // Logs why (an error if the server failed, else a warning) and sends the ERROR; the
  // caller then ends the session. What the peer sent is escaped in the log; the
  // message sent names no path of the server's (the store's prefix is cut). (GCC 12
  // destroys some temporaries of a co_await expression twice: what a co_await uses is
  // held in named variables.)
  asio::awaitable<void> refuse(const Refusal& r) {
    const std::string why = printable(r.why);
    log_to(logger_, r.code == ErrorCode::kServer ? LogLevel::kError : LogLevel::kWarning,
           volume_.empty() ? fmt::format("{}: {}", peer_, why)
                           : fmt::format("{}: volume '{}': {}", peer_, volume_, why));
    outcome_ = fmt::format("refused ({})", proto::error_code_name(r.code));
    metrics_.refused(volume_, proto::error_code_name(r.code));
    std::string told = why;
    for (const std::string& prefix : private_prefixes_)
      for (size_t at; (at = told.find(prefix)) != std::string::npos;) told.erase(at, prefix.size());
    const std::vector<uint8_t> payload = proto::encode(proto::Error{r.code, told});
    co_await send(MessageType::kError, payload);
  }

 private:
  Stream& s_;
  asio::steady_timer& timer_;
  proto::FrameDecoder dec_;
  std::chrono::nanoseconds idle_;
  std::optional<asio::steady_timer::time_point> deadline_;
  std::string peer_;
  std::vector<std::string> private_prefixes_;  // cut from what peers are told
  std::string volume_;
  const Logger& logger_;
  ServerMetrics& metrics_;
  uint64_t in_ = 0, out_ = 0;
  std::string outcome_ = "ended";
  std::array<uint8_t, 64 * 1024> buf_;
};

// What one shipping message asks of the store: its ACK, or why it cannot be (*code
// says how to refuse it).
Result<proto::Ack> apply_to_store(ReceivingVolume& vol, const proto::Frame& f, ErrorCode* code) {
  *code = ErrorCode::kMalformed;
  Result<proto::Ack> ack = Status::invalid(
      fmt::format("{} is not expected while shipping", proto::message_type_name(f.type)));
  if (f.type == MessageType::kBaseBegin) {
    auto b = proto::decode_base_begin(f);
    if (!b) return b.status();
    ack = vol.begin_base(*b);
  } else if (f.type == MessageType::kBaseData) {
    auto d = proto::decode_base_data(f);
    if (!d) return d.status();
    ack = vol.base_data(d->offset, d->data);
  } else if (f.type == MessageType::kBaseZero) {
    auto z = proto::decode_base_zero(f);
    if (!z) return z.status();
    ack = vol.base_zero(z->offset, z->length);
  } else if (f.type == MessageType::kRecords) {
    auto r = proto::decode_records(f);
    if (!r) return r.status();
    ack = vol.append(*r);
  } else {
    return ack;
  }
  if (!ack) *code = vol.last_error();
  return ack;
}

// The most record bytes taken and not yet committed to a bucket store before a commit,
// while more frames are arriving.
constexpr uint64_t kMaxUncommitted = 16u << 20;

// The bytes of the store a shipping frame takes once stored (a base's runs of zeroes
// stay holes).
uint64_t stored_size(const proto::Frame& f) {
  return f.type == MessageType::kRecords || f.type == MessageType::kBaseData ? f.payload.size() : 0;
}

// The WELCOME to a reader: what the store holds of the volume `m` describes, up to its
// last sealed segment.
proto::Welcome read_welcome(const Manifest& m) {
  proto::Welcome w;
  w.purpose = proto::Purpose::kRead;
  std::copy(m.volume_id.begin(), m.volume_id.end(), w.volume_id.begin());
  w.image_size = m.image_size;
  w.base_seq = m.base_seq;
  w.flags = m.base_sealed ? proto::kFlagSealedBase : 0;
  w.base_bytes = proto::stored_base_bytes(m.image_size, w.flags);
  w.durable_seq = m.base_seq;
  for (const ManifestSegment& seg : m.segments)
    if (seg.sealed) w.durable_seq = seg.last_seq;
  return w;
}

// Closes the connection whenever the timer expires (a read or write took too long,
// or the HELLO's deadline passed) or the connection's rights were revoked (the timer
// is then cancelled to wake this).
template <class Socket>
void arm_watchdog(asio::steady_timer& timer, Socket& socket, std::shared_ptr<ConnState> conn) {
  timer.async_wait([&timer, &socket, conn](const boost::system::error_code&) {
    if (conn->done) return;
    if (conn->revoked || timer.expiry() <= asio::steady_timer::clock_type::now()) {
      boost::system::error_code ignored;
      socket.close(ignored);
      return;
    }
    arm_watchdog(timer, socket, conn);
  });
}

}  // namespace

Status Server::Impl::init() {
  if (opts_.store_dir.empty())
    return Status::invalid("--store DIR or --store s3://BUCKET/PREFIX is required");
  if (is_s3_uri(opts_.store_dir)) {
    BucketStoreOptions b;
    REWIND_RETURN_IF_ERROR(parse_s3_uri(opts_.store_dir, &b.where).with_context("--store"));
    b.s3 = opts_.s3;
    REWIND_RETURN_IF_ERROR(resolve_s3_options(&b.s3).with_context("--store"));
    b.cache_dir = opts_.cache_dir;
    bucket_ = std::move(b);
  } else if (!opts_.cache_dir.empty()) {
    return Status::invalid("--cache is for a store in a bucket (--store s3://BUCKET/PREFIX)");
  }
  if (opts_.tokens_file.empty())
    return Status::invalid("--tokens FILE is required: each host needs a token (see --help)");
  REWIND_RETURN_IF_ERROR(reload_tokens());
  if (!opts_.metrics.empty()) {
    auto m = MetricsEndpoint::listen(opts_.metrics, logger_);
    if (!m) return m.status().with_context("--metrics");
    endpoint_ = std::move(*m);
  }
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(opts_.listen_host, ec);
  if (ec) return Status::invalid(fmt::format("--listen {}: not an IP address", opts_.listen_host));
  if (opts_.tls_cert.empty() != opts_.tls_key.empty())
    return Status::invalid("--tls-cert and --tls-key go together");
  if (opts_.tls_cert.empty()) {
    if (!opts_.insecure_loopback)
      return Status::invalid(
          "TLS is required: give --tls-cert and --tls-key (or --insecure-loopback on a "
          "loopback address, for tests)");
    if (!is_loopback(addr))
      return Status::invalid(fmt::format(
          "--insecure-loopback needs a loopback address to listen on, not {}", opts_.listen_host));
    use_tls_ = false;
  } else {
    tls_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    tls_.use_certificate_chain_file(opts_.tls_cert, ec);
    if (ec) return Status::invalid(fmt::format("--tls-cert {}: {}", opts_.tls_cert, ec.message()));
    if (Status st = check_secret_file(opts_.tls_key); !st) return st.with_context("--tls-key");
    tls_.use_private_key_file(opts_.tls_key, ssl::context::pem, ec);
    if (ec) return Status::invalid(fmt::format("--tls-key {}: {}", opts_.tls_key, ec.message()));
  }
  const tcp::endpoint ep(addr, opts_.listen_port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::io_error(fmt::format("cannot listen on {}:{}: {}", opts_.listen_host,
                                        opts_.listen_port, ec.message()),
                            ec.value());
  // Last, so that a server refused for any other reason creates nothing.
  if (bucket_) return prepare_bucket_store(&*bucket_, logger_);
  bool created = false;
  std::optional<mode_t> was;
  if (Status s = prepare_store(opts_.store_dir, &created, &was); !s.is_ok())
    return s.with_context("--store");
  if (created)
    logger_(LogLevel::kInfo, fmt::format("created the store {} (mode 0700)", opts_.store_dir));
  if (was)
    logger_(LogLevel::kInfo,
            fmt::format("the store {} was readable by others (mode {:04o}); made it private (0700)",
                        opts_.store_dir, *was));
  return Status::ok();
}

Status Server::Impl::reload_tokens() {
  auto t = TokenTable::load(opts_.tokens_file);
  if (!t) return t.status();
  auto table = std::make_shared<const TokenTable>(std::move(*t));
  {
    std::lock_guard lk(mu_);
    tokens_ = table;
  }
  revoke_lost_rights(*table);
  return Status::ok();
}

uint64_t Server::Impl::add_session(Session s) {
  std::lock_guard lk(sessions_->mu);
  const uint64_t id = sessions_->next++;
  sessions_->by_id.emplace(id, std::move(s));
  return id;
}

void Server::Impl::revoke_lost_rights(const TokenTable& tokens) {
  std::lock_guard lk(sessions_->mu);
  for (auto& [id, s] : sessions_->by_id) {
    const auto have = tokens.access(s.token, s.volume);
    const auto need =
        s.purpose == proto::Purpose::kShip ? TokenTable::Access::kWrite : TokenTable::Access::kRead;
    if (have >= need) continue;
    log(LogLevel::kWarning,
        fmt::format("{}: volume '{}': the reloaded tokens no longer let its token {} it; "
                    "closing the connection",
                    s.peer, s.volume, s.purpose == proto::Purpose::kShip ? "ship" : "read"));
    s.revoke();
  }
}

void Server::Impl::watch_signals() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      Status st = reload_tokens();
      log(st ? LogLevel::kInfo : LogLevel::kWarning,
          st ? fmt::format("reloaded {}", opts_.tokens_file)
             : fmt::format("keeping the old tokens: {}", st.message()));
      watch_signals();
      return;
    }
    log(LogLevel::kInfo, "stopping");
    io_.stop();
  });
}

void Server::Impl::run() {
  watch_signals();
  asio::co_spawn(io_, accept_loop(), asio::detached);
  const unsigned n =
      opts_.threads ? opts_.threads : std::max(2u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  if (endpoint_)
    endpoint_->start([this] {
      unsigned open = 0;
      {
        std::lock_guard lk(conn_mu_);
        open = connections_;
      }
      return metrics_->render(open);
    });
  for (unsigned i = 1; i < n; ++i) pool.emplace_back([this] { io_.run(); });
  io_.run();
  for (auto& t : pool) t.join();
  if (endpoint_) endpoint_->stop();
}

asio::awaitable<void> Server::Impl::accept_loop() {
  for (;;) {
    auto strand = asio::make_strand(io_);
    tcp::socket socket(strand);
    co_await acceptor_.async_accept(socket, asio::use_awaitable);
    boost::system::error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    std::string address = ec ? "?" : remote.address().to_string();
    std::string peer = ec ? "?" : fmt::format("{}:{}", address, remote.port());
    if (!count_connection(address, peer)) continue;  // the socket closes here
    socket.set_option(tcp::no_delay(true), ec);
    // A member coroutine with its arguments by value: a lambda's captures would die
    // with the lambda, before the coroutine ends.
    asio::co_spawn(strand, handle(std::move(socket), std::move(address), std::move(peer)),
                   asio::detached);
  }
}

bool Server::Impl::count_connection(const std::string& address, const std::string& peer) {
  std::lock_guard lk(conn_mu_);
  unsigned& from = per_address_[address];
  if (connections_ < opts_.max_connections && from < opts_.max_per_address) {
    ++connections_;
    ++from;
    return true;
  }
  const bool all = connections_ >= opts_.max_connections;
  if (from == 0) per_address_.erase(address);
  metrics_->refused("", "TOO_MANY_CONNECTIONS");
  log(LogLevel::kWarning,
      all ? fmt::format("{}: refused, {} connections open already (--max-connections)", peer,
                        opts_.max_connections)
          : fmt::format("{}: refused, {} connections open from {} already (--max-per-address)",
                        peer, opts_.max_per_address, address));
  return false;
}

void Server::Impl::release_connection(const std::string& address) {
  std::lock_guard lk(conn_mu_);
  --connections_;
  if (--per_address_[address] == 0) per_address_.erase(address);
}

asio::awaitable<void> Server::Impl::handle(tcp::socket sock, std::string address,
                                           std::string peer) {
  asio::steady_timer timer(sock.get_executor());
  auto conn = std::make_shared<ConnState>();
  // The TLS handshake and the HELLO must both be done by then.
  const auto hello_deadline = asio::steady_timer::clock_type::now() + opts_.hello_timeout;
  try {
    if (use_tls_) {
      ssl::stream<tcp::socket> s(std::move(sock), tls_);
      timer.expires_at(hello_deadline);
      arm_watchdog(timer, s.lowest_layer(), conn);
      co_await s.async_handshake(ssl::stream_base::server, asio::use_awaitable);
      timer.expires_at(asio::steady_timer::time_point::max());
      co_await serve(s, timer, conn, peer, hello_deadline);
    } else {
      timer.expires_at(asio::steady_timer::time_point::max());
      arm_watchdog(timer, sock, conn);
      co_await serve(sock, timer, conn, peer, hello_deadline);
    }
  } catch (const boost::system::system_error& e) {
    log(LogLevel::kInfo, fmt::format("{}: connection closed ({})", peer, e.code().message()));
  }
  conn->done = true;
  timer.cancel();
  release_connection(address);
}

std::optional<Refusal> Server::Impl::admit(const proto::Frame& first, proto::Hello* hello) {
  auto h = proto::decode_hello(first);
  if (!h) return Refusal{ErrorCode::kMalformed, h.status().message()};
  if (h->min_version > proto::kVersion || h->max_version < proto::kOldestVersion)
    return Refusal{ErrorCode::kNoVersion, fmt::format("this server speaks versions {} to {}",
                                                      proto::kOldestVersion, proto::kVersion)};
  // From here on max_version is the version chosen: the newest both speak.
  h->max_version = std::min(h->max_version, proto::kVersion);
  const auto access = tokens()->access(h->token, h->volume);
  if (access == TokenTable::Access::kNone)
    return Refusal{ErrorCode::kUnauthorized,
                   fmt::format("the token does not grant volume '{}'", h->volume)};
  if (h->purpose == proto::Purpose::kShip && access != TokenTable::Access::kWrite)
    return Refusal{ErrorCode::kReadOnly,
                   fmt::format("the token grants reading volume '{}' only", h->volume)};
  *hello = std::move(*h);
  return std::nullopt;
}

std::optional<Refusal> Server::Impl::within_grant(const proto::Hello& hello, const proto::Frame& f,
                                                  const ReceivingVolume& vol,
                                                  std::optional<uint64_t>* used) {
  const TokenTable::Grant g = tokens()->grant(hello.token, hello.volume);
  if (g.access != TokenTable::Access::kWrite)
    return Refusal{ErrorCode::kUnauthorized,
                   fmt::format("the token no longer grants shipping volume '{}'", hello.volume)};
  const uint64_t adds = stored_size(f);
  if (g.quota == 0 || adds == 0) return std::nullopt;
  if (!*used) {
    auto measured = vol.stored_bytes();
    if (!measured) return Refusal{ErrorCode::kServer, measured.status().message()};
    *used = *measured;
  }
  const uint64_t held = **used;
  if (held + adds <= g.quota) return std::nullopt;
  return Refusal{ErrorCode::kQuota,
                 fmt::format("volume '{}' takes {} bytes of the store and its quota is {}: the "
                             "{} bytes sent were not stored; raise its quota (VOLUME@SIZE in the "
                             "token file) to ship more",
                             hello.volume, held, g.quota, adds)};
}

template <class Stream>
asio::awaitable<void> Server::Impl::serve(Stream& s, asio::steady_timer& timer,
                                          std::shared_ptr<ConnState> conn, std::string peer,
                                          asio::steady_timer::time_point hello_deadline) {
  Wire<Stream> wire(s, timer, opts_.idle_timeout, hello_deadline, std::move(peer),
                    private_prefixes(), logger_, *metrics_);
  auto first = co_await wire.read();
  proto::Hello hello;
  std::optional<Refusal> no = first ? admit(*first, &hello) : wire.refusal_of(first.status());
  if (no) {
    co_await wire.refuse(*no);
    co_return;
  }
  wire.authenticated(hello.volume);
  // A reload that takes the token's rights closes the connection at once: the
  // watchdog, woken on this connection's strand, sees `revoked`.
  // (Named, not a temporary in the call: GCC 12 destroys some temporaries of a
  // coroutine twice.)
  auto ex = timer.get_executor();
  std::function<void()> revoke = [ex, &timer, conn] {
    asio::post(ex, [&timer, conn] {
      if (conn->done) return;
      conn->revoked = true;
      timer.cancel();
    });
  };
  Session session{hello.token, hello.volume, wire.peer(), hello.purpose, std::move(revoke)};
  const uint64_t id = add_session(std::move(session));
  const auto counted = hello.purpose == proto::Purpose::kShip ? ServerMetrics::Purpose::kShip
                                                              : ServerMetrics::Purpose::kRead;
  metrics_->session_started(hello.volume, counted);
  struct EndSession {
    std::shared_ptr<Sessions> sessions;
    uint64_t id;
    std::shared_ptr<ServerMetrics> metrics;
    std::string volume;
    ServerMetrics::Purpose purpose;
    ~EndSession() {
      metrics->session_ended(volume, purpose);
      std::lock_guard lk(sessions->mu);
      sessions->by_id.erase(id);
    }
  } end{sessions_, id, metrics_, hello.volume, counted};
  // One audit line per session, never with the token.
  const char* purpose = hello.purpose == proto::Purpose::kShip ? "ship" : "read";
  std::string outcome;
  try {
    if (hello.purpose == proto::Purpose::kShip)
      co_await ship(wire, hello);
    else
      co_await read(wire, hello);
    outcome = wire.outcome();
  } catch (const boost::system::system_error& e) {
    outcome = conn->revoked ? std::string("revoked") : "closed (" + e.code().message() + ")";
  }
  log(LogLevel::kInfo,
      fmt::format("audit: peer {} volume '{}' purpose {} in {} out {} bytes: {}", wire.peer(),
                  hello.volume, purpose, wire.bytes_in(), wire.bytes_out(), outcome));
}

std::vector<std::string> Server::Impl::private_prefixes() const {
  if (!bucket_) return {join_path(opts_.store_dir, "")};
  return {bucket_->where.uri() + "/", join_path(bucket_->cache_dir, "")};
}

template <class W>
asio::awaitable<void> Server::Impl::read(W& wire, const proto::Hello& hello) {
  // Reading needs no lock: a reader sees the manifest as last stored and the open
  // segment up to its last whole record, while a shipper may go on appending. From a
  // bucket, the volume as its manifest was at the HELLO, in a cache of this session's.
  std::string dir = join_path(opts_.store_dir, hello.volume);
  std::shared_ptr<BucketCache> bucket;
  Result<Manifest> m = Status::not_found("");
  if (bucket_) {
    auto client = bucket_volume_client(*bucket_, hello.volume);
    BucketReadOptions ro;
    ro.cache_dir =
        join_path(bucket_read_dir(*bucket_), fmt::format("{}.{}", hello.volume, ++reads_));
    ro.cache_limit = opts_.read_cache;
    auto cache = client ? BucketCache::open(std::move(*client), ro, logger_)
                        : Result<std::shared_ptr<BucketCache>>(client.status());
    if (cache) {
      bucket = std::move(*cache);
      dir = bucket->dir();
      m = Manifest::load(dir);
    } else {
      m = cache.status();
    }
  } else {
    m = Manifest::load(dir);
  }
  if (!m) {
    const bool absent = m.status().code() == Status::Code::kNotFound;
    const Refusal no =
        absent ? Refusal{ErrorCode::kNoVolume,
                         fmt::format("the server holds no volume '{}' (or not its whole base yet)",
                                     hello.volume)}
               : Refusal{ErrorCode::kServer, m.status().message()};
    co_await wire.refuse(no);
    co_return;
  }
  proto::Welcome w = read_welcome(*m);
  w.version = hello.max_version;
  if (w.version < 2) w.flags = 0;
  const std::vector<uint8_t> welcome = proto::encode(w);
  co_await wire.send(MessageType::kWelcome, welcome);
  for (;;) {
    auto f = co_await wire.read();
    std::optional<Refusal> no;
    if (!f) {
      no = wire.refusal_of(f.status());
    } else if (f->type == MessageType::kPing) {
      co_await wire.send(MessageType::kPong, f->payload);
    } else if (f->type == MessageType::kInfo) {
      no = co_await send_report(wire, dir, bucket.get(), *f);
    } else if (f->type == MessageType::kRestore) {
      no = co_await send_view(wire, dir, bucket, *f);
    } else if (f->type == MessageType::kFetch && hello.max_version >= 2 && f->payload.empty()) {
      no = co_await send_stored(wire, dir, bucket.get(), hello);
    } else {
      no = Refusal{ErrorCode::kMalformed, fmt::format("{} is not expected while reading",
                                                      proto::message_type_name(f->type))};
    }
    if (no) {
      co_await wire.refuse(*no);
      co_return;
    }
  }
}

// Answers an INFO with the REPORT of the journal in `dir`.
template <class W>
asio::awaitable<std::optional<Refusal>> Server::Impl::send_report(W& wire, const std::string& dir,
                                                                  const BucketCache* bucket,
                                                                  const proto::Frame& f) {
  auto req = proto::decode_info(f);
  if (!req) co_return Refusal{ErrorCode::kMalformed, req.status().message()};
  auto r = inspect_journal(dir, req->scan);
  if (!r) co_return Refusal{ErrorCode::kServer, r.status().message()};
  r->dir = wire.volume();  // not the server's path
  if (bucket) {
    // The cache's base is sparse: what the bucket holds of it is in the base map.
    r->base_allocated = bucket->base_map().data_bytes();
  }
  const std::vector<uint8_t> report = proto::encode(proto::Report{std::move(*r)});
  co_await wire.send(MessageType::kReport, report);
  co_return std::nullopt;
}

// Answers a RESTORE by streaming the volume at its target: VIEW, then EXTENTs in
// offset order covering it whole (runs of zeroes as their length only), then END.
template <class W>
asio::awaitable<std::optional<Refusal>> Server::Impl::send_view(W& wire, const std::string& dir,
                                                                std::shared_ptr<BucketCache> bucket,
                                                                const proto::Frame& f) {
  auto req = proto::decode_restore(f);
  if (!req) co_return Refusal{ErrorCode::kMalformed, req.status().message()};
  // A reader never writes to the store: a missing or damaged index is rebuilt in
  // memory for this read only.
  auto v = JournalView::open(dir, req->target, logger_, /*repair=*/false);
  if (!v) {
    const bool range = v.status().code() == Status::Code::kInvalidArgument ||
                       v.status().code() == Status::Code::kNotFound;
    co_return Refusal{range ? ErrorCode::kNoPoint : ErrorCode::kServer, v.status().message()};
  }
  const JournalView& view = **v;
  if (view.history().sealed())
    co_return Refusal{ErrorCode::kSealed,
                      fmt::format("volume '{}' is sealed (shipped with ship-key=): this server "
                                  "cannot read it; give the key file with --key",
                                  wire.volume())};
  if (bucket) (*v)->set_fetcher(bucket);
  proto::ViewInfo info{view.seq(), view.time_ns(), view.size(), view.map().size(), 0, view.note()};
  for (const auto& [start, e] : view.map()) info.journal_bytes += e.end - start;
  {
    const std::vector<uint8_t> payload = proto::encode(info);
    co_await wire.send(MessageType::kView, payload);
  }
  log(LogLevel::kInfo,
      fmt::format("{}: restoring volume '{}' at seq {}", wire.peer(), wire.volume(), view.seq()));
  proto::End end;
  proto::Extent run;  // zeroes not sent yet
  std::vector<uint8_t> buf(1u << 20);
  // Every MiB read lets the other connections of this thread run; a run of zeroes is
  // sent every kMaxZeroRun bytes, so a client that left (or whose token was revoked)
  // is noticed by a failed write even in the holes of a large sparse volume.
  constexpr uint64_t kMaxZeroRun = 64u << 20;
  // From a bucket, what each window needs is fetched with ranged GETs in parallel.
  constexpr uint64_t kFetchWindow = 16u << 20;
  auto ex = co_await asio::this_coro::executor;
  for (uint64_t at = 0; at < view.size();) {
    co_await asio::post(ex, asio::use_awaitable);
    if (bucket && at % kFetchWindow == 0)
      view.prefetch(at, std::min<uint64_t>(kFetchWindow, view.size() - at));
    if (run.length >= kMaxZeroRun) {
      const std::vector<uint8_t> payload = proto::encode(run);
      co_await wire.send(MessageType::kExtent, payload);
      run = proto::Extent{};
    }
    const uint64_t n = std::min<uint64_t>(buf.size(), view.size() - at);
    std::span<uint8_t> chunk(buf.data(), n);
    if (Status st = view.read(chunk, at); !st) co_return Refusal{ErrorCode::kServer, st.message()};
    const bool zero = std::all_of(chunk.begin(), chunk.end(), [](uint8_t b) { return b == 0; });
    if (zero) {
      if (run.length == 0) run = proto::Extent{at, true, 0, {}};
      run.length += n;
      end.zero_bytes += n;
    } else {
      if (run.length != 0) {
        const std::vector<uint8_t> payload = proto::encode(run);
        co_await wire.send(MessageType::kExtent, payload);
        run = proto::Extent{};
      }
      const proto::Extent data{at, false, n, std::vector<uint8_t>(chunk.begin(), chunk.end())};
      const std::vector<uint8_t> payload = proto::encode(data);
      co_await wire.send(MessageType::kExtent, payload);
      end.data_bytes += n;
    }
    at += n;
  }
  if (run.length != 0) {
    const std::vector<uint8_t> payload = proto::encode(run);
    co_await wire.send(MessageType::kExtent, payload);
  }
  const std::vector<uint8_t> payload = proto::encode(end);
  co_await wire.send(MessageType::kEnd, payload);
  co_return std::nullopt;
}

template <class W>
asio::awaitable<void> Server::Impl::ship(W& wire, const proto::Hello& hello) {
  // One shipper a volume at a time.
  bool busy = false;
  {
    std::lock_guard lk(shipping_->mu);
    busy = !shipping_->volumes.insert(hello.volume).second;
  }
  if (busy) {
    const Refusal no{
        ErrorCode::kBusy,
        fmt::format("another shipper is connected for volume '{}'; try again later", hello.volume)};
    co_await wire.refuse(no);
    co_return;
  }
  struct Release {
    std::shared_ptr<Shipping> shipping;
    std::string volume;
    ~Release() {
      std::lock_guard lk(shipping->mu);
      shipping->volumes.erase(volume);
    }
  } release{shipping_, hello.volume};

  ErrorCode code = ErrorCode::kServer;
  auto v = open_volume(hello.volume, &code);
  if (!v) {
    const Refusal no{code, v.status().message()};
    co_await wire.refuse(no);
    co_return;
  }
  ReceivingVolume& vol = **v;
  // For a quota: what the volume takes of the store, measured when a quota first
  // applies, and what it took since.
  std::optional<uint64_t> used;
  proto::Welcome w = vol.state();
  w.purpose = proto::Purpose::kShip;
  w.version = hello.max_version;
  if (w.version < 2) w.flags = 0;
  const std::vector<uint8_t> welcome = proto::encode(w);
  co_await wire.send(MessageType::kWelcome, welcome);
  log(LogLevel::kInfo, fmt::format("{}: shipping volume '{}' (the store holds up to seq {})",
                                   wire.peer(), hello.volume, w.durable_seq));
  {
    auto stored = vol.stored_bytes();
    metrics_->holding(hello.volume, w.durable_seq, stored ? *stored : 0, wall_clock_ns());
  }
  uint64_t unacked = 0;  // bytes stored since the last ACK, for the metrics
  for (;;) {
    auto f = co_await wire.read();
    if (f && f->type == MessageType::kPing) {
      co_await wire.send(MessageType::kPong, f->payload);
      continue;
    }
    if (f) {
      std::optional<Refusal> no = within_grant(hello, *f, vol, &used);
      if (no) {
        co_await wire.refuse(*no);
        co_return;
      }
    }
    code = ErrorCode::kMalformed;
    auto ack = f ? apply_to_store(vol, *f, &code) : Result<proto::Ack>(f.status());
    if (ack && used) *used += stored_size(*f);
    if (ack) unacked += stored_size(*f);
    if (ack && vol.uncommitted()) {
      // Records not in the store yet (a bucket): the frames already on their way join
      // them, and one commit acknowledges them all.
      if (wire.more_coming() && vol.uncommitted_bytes() < kMaxUncommitted) continue;
      ack = vol.commit();
      if (!ack) code = vol.last_error();
    }
    if (!ack) {
      const Refusal no = f ? Refusal{code, ack.status().message()} : wire.refusal_of(f.status());
      co_await wire.refuse(no);
      co_return;
    }
    metrics_->acked(hello.volume, ack->durable_seq, unacked, wall_clock_ns());
    unacked = 0;
    const std::vector<uint8_t> acked = proto::encode(*ack);
    co_await wire.send(MessageType::kAck, acked);
  }
}

Result<std::unique_ptr<ReceivingVolume>> Server::Impl::open_volume(const std::string& name,
                                                                   ErrorCode* code) {
  *code = ErrorCode::kServer;
  if (!bucket_) {
    auto v = StoredVolume::open(opts_.store_dir, name, true, logger_);
    if (!v) return v.status();
    return std::unique_ptr<ReceivingVolume>(std::move(*v));
  }
  auto v = BucketVolume::open(*bucket_, name, logger_);
  if (!v) {
    // Another writer holds the volume's copy (another server's session, most likely).
    if (v.status().code() == Status::Code::kBusy) *code = ErrorCode::kBusy;
    return v.status();
  }
  return std::unique_ptr<ReceivingVolume>(std::move(*v));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::create(const ServerOptions& opts, Logger logger) {
  auto impl = std::make_unique<Impl>(opts, std::move(logger));
  REWIND_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const {
  return impl_->port();
}
std::string Server::metrics_url() const {
  return impl_->metrics_url();
}
void Server::run() {
  impl_->run();
}
void Server::stop() {
  impl_->stop();
}
Status Server::reload_tokens() {
  return impl_->reload_tokens();
}

template <class W>
asio::awaitable<std::optional<Refusal>> Server::Impl::send_stored(W& wire, const std::string& dir,
                                                                  const BucketCache* bucket,
                                                                  const proto::Hello& hello) {
  if (bucket)
    co_return Refusal{ErrorCode::kMalformed,
                      "FETCH is for a store on disk; this server's store is a bucket, which "
                      "readers read with s3://"};
  auto m = Manifest::load(dir);
  if (!m) co_return Refusal{ErrorCode::kServer, m.status().message()};
  log(LogLevel::kInfo, fmt::format("{}: sending volume '{}' as stored", wire.peer(), hello.volume));
  proto::BaseBegin b = base_begin_of(*m);
  b.flags = m->base_sealed ? proto::kFlagSealedBase : 0;
  {
    const std::vector<uint8_t> payload = proto::encode(b);
    co_await wire.send(MessageType::kBaseBegin, payload);
  }
  auto base = File::open(base_path(dir, m->base_file), O_RDONLY);
  if (!base) co_return Refusal{ErrorCode::kServer, base.status().message()};
  proto::End end;
  const uint64_t size = proto::stored_base_bytes(m->image_size, b.flags);
  auto ex = co_await asio::this_coro::executor;
  std::vector<uint8_t> chunk;
  for (uint64_t at = 0; at < size;) {
    co_await asio::post(ex, asio::use_awaitable);
    auto run = next_base_run(*base, at, size, &chunk);
    if (!run) co_return Refusal{ErrorCode::kServer, run.status().message()};
    if (run->zero) {
      const std::vector<uint8_t> payload = proto::encode(proto::BaseZero{at, run->length});
      co_await wire.send(MessageType::kBaseZero, payload);
      end.zero_bytes += run->length;
    } else {
      const std::vector<uint8_t> payload = proto::encode(proto::BaseData{at, chunk});
      co_await wire.send(MessageType::kBaseData, payload);
      end.data_bytes += run->length;
    }
    at += run->length;
  }
  // The records of every segment, as stored, in frames of about 1 MiB.
  std::vector<RecordHeader> hs;
  std::vector<std::vector<uint8_t>> payloads;
  uint64_t bytes = 0;
  auto records = [&]() {
    std::vector<std::span<const uint8_t>> ps(payloads.begin(), payloads.end());
    std::vector<uint8_t> payload = proto::encode_records(hs, ps);
    hs.clear(), payloads.clear(), bytes = 0;
    return payload;
  };
  for (const ManifestSegment& seg : m->segments) {
    auto r = SegmentReader::open(segment_path(dir, seg.file), seg.sealed);
    if (!r) co_return Refusal{ErrorCode::kServer, r.status().message()};
    r->keep_sealed();
    RecordView rec;
    for (;;) {
      auto more = r->next(&rec);
      if (!more) co_return Refusal{ErrorCode::kServer, more.status().message()};
      if (!*more) break;
      hs.push_back(rec.header);
      payloads.emplace_back(rec.stored.begin(), rec.stored.end());
      bytes += format::record_span(rec.header.payload_length);
      end.data_bytes += format::record_span(rec.header.payload_length);
      if (bytes >= (1u << 20)) {
        const std::vector<uint8_t> payload = records();
        co_await wire.send(MessageType::kRecords, payload);
      }
    }
  }
  if (!hs.empty()) {
    const std::vector<uint8_t> payload = records();
    co_await wire.send(MessageType::kRecords, payload);
  }
  const std::vector<uint8_t> payload = proto::encode(end);
  co_await wire.send(MessageType::kEnd, payload);
  co_return std::nullopt;
}

}  // namespace rwd
