// <utility> first: Boost 1.74's asio headers use std::exchange without including it.
#include <utility>

#include "rewind/ship/shipper.h"

#include <fcntl.h>
#include <pthread.h>

#include <boost/asio.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <type_traits>

#include <fmt/format.h>

#include "bucket_shipper.h"
#include "rewind/base/clock.h"
#include "rewind/base/file.h"
#include "rewind/format/format.h"
#include "rewind/format/record.h"
#include "rewind/journal/journal.h"
#include "rewind/journal/journal_tail.h"
#include "rewind/ship/flow_control.h"
#include "rewind/ship/protocol.h"
#include "tls_client.h"

namespace rwd {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using proto::MessageType;
using Clock = std::chrono::steady_clock;

namespace {

// A session's fatal condition, carried out of the coroutines.
struct SessionError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

class Shipper::Impl {
 public:
  Impl(JournalOwner& owner, std::string dir, ShipperOptions opts, Logger logger)
      : owner_(owner),
        dir_(std::move(dir)),
        opts_(std::move(opts)),
        logger_(std::move(logger)),
        tail_(dir_),
        window_(opts_.frame_bytes, Clock::now()),
        cap_(opts_.rate, opts_.frame_bytes, Clock::now()) {
    status_.window = window_.bytes();
    thread_ = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "rewind-ship");
      loop();
    });
  }

  void stop() {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  // The lag in seconds is taken at the call, from the oldest record the server lacks:
  // while the server is away it grows by the second, not only when the shipper looks
  // again between its retries.
  ShipperStatus status() const {
    std::lock_guard lk(mu_);
    ShipperStatus s = status_;
    s.lag_seconds = lag_seconds_at(lag_oldest_ns_, wall_clock_ns());
    return s;
  }

 private:
  // One frame sent and not yet acknowledged.
  struct InFlight {
    uint64_t last_seq = 0;
    uint64_t first_time_ns = 0;
    uint64_t record_bytes = 0;
    uint64_t wire_bytes = 0;
    std::pair<uint64_t, uint64_t> end;  // tail position after its last record
    Clock::time_point sent;
    bool window_limited = false;  // the window was nearly full when it was sent
  };
  // The next RECORDS frame, read and not sent yet.
  struct Pending {
    std::vector<uint8_t> frame;
    InFlight meta;
    bool empty() const { return frame.empty(); }
  };

  bool stopping() {
    std::lock_guard lk(mu_);
    return stopping_;
  }
  uint64_t acked_seq() {
    std::lock_guard lk(mu_);
    return status_.acked_seq;
  }
  void log(LogLevel level, const std::string& m) { log_to(logger_, level, "ship: " + m); }

  void loop() {
    auto delay = opts_.retry_min;
    std::string last_logged;
    while (!stopping()) {
      std::string error;
      bool progressed = false;
      asio::co_spawn(io_, session(&progressed), [&](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const SessionError& ex) {
          error = ex.what();
        } catch (const std::exception& ex) {
          error = fmt::format("{}:{}: {}", opts_.link.host, opts_.link.port, ex.what());
        }
      });
      io_.run();
      io_.restart();
      {
        std::lock_guard lk(mu_);
        status_.connected = false;
        status_.phase = "connecting";
        if (!error.empty()) status_.error = error;
        if (stopping_) break;
        ++status_.reconnects;
      }
      if (progressed) delay = opts_.retry_min;
      // Say each distinct failure once, not at every retry.
      if (!error.empty() && error != last_logged) {
        log(LogLevel::kWarning,
            fmt::format("{}; retrying every {}s or less, keeping the local segments", error,
                        std::chrono::duration_cast<std::chrono::seconds>(opts_.retry_max).count()));
        last_logged = error;
      }
      // Until the next try, the lag goes on growing: say so.
      const auto retry_at = Clock::now() + delay;
      while (!stopping() && Clock::now() < retry_at) {
        lag_while_disconnected();
        std::unique_lock lk(mu_);
        cv_.wait_for(lk,
                     std::min<Clock::duration>(retry_at - Clock::now(), std::chrono::seconds(1)),
                     [&] { return stopping_; });
      }
      delay = std::min(delay * 2, opts_.retry_max);
    }
  }

  // ---- one connection -------------------------------------------------------------
  asio::awaitable<void> session(bool* progressed) {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    const std::string port = std::to_string(opts_.link.port);
    auto endpoints = co_await resolver.async_resolve(opts_.link.host, port, asio::use_awaitable);
    if (plain_link_allowed(opts_.link, endpoints)) {
      tcp::socket s(ex);
      co_await run_on(s, s, endpoints, progressed);
    } else {
      ssl::context ctx(ssl::context::tls_client);
      boost::system::error_code ec;
      trust_only(ctx, opts_.link, ec);
      if (ec)
        throw SessionError(fmt::format("{}: {}",
                                       opts_.link.ca_file.empty() ? "the system's trust store"
                                                                  : "ship-ca=" + opts_.link.ca_file,
                                       ec.message()));
      ssl::stream<tcp::socket> s(ex, ctx);
      verify_server(s, opts_.link);
      co_await run_on(s, s.next_layer(), endpoints, progressed);
    }
  }

  template <class Stream>
  asio::awaitable<void> run_on(Stream& s, tcp::socket& sock,
                               const tcp::resolver::results_type& endpoints, bool* progressed) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer watchdog(ex);
    asio::steady_timer wake(ex);
    wake_ = &wake;
    bool done = false;
    // Closes the connection when the peer does not answer in time.
    deadline_ = Clock::now() + opts_.link.timeout;
    bool watch_done = false;  // the watchdog refers to this frame until it ends
    asio::co_spawn(ex, watch(watchdog, sock, &done),
                   [&](std::exception_ptr) { watch_done = true; });
    std::exception_ptr failure;
    bool reader_done = true;
    try {
      co_await asio::async_connect(sock, endpoints, asio::use_awaitable);
      sock.set_option(tcp::no_delay(true));
      if constexpr (!std::is_same_v<Stream, tcp::socket>) {
        boost::system::error_code hs;
        co_await s.async_handshake(ssl::stream_base::client,
                                   asio::redirect_error(asio::use_awaitable, hs));
        if (hs)
          throw SessionError(fmt::format("the TLS handshake failed ({}); nothing was sent. {}",
                                         hs.message(), tls_advice(opts_.link)));
      }
      proto::FrameDecoder dec;
      const proto::Welcome w = co_await open(s, dec);
      {
        std::lock_guard lk(mu_);
        status_.connected = true;
        status_.error.clear();
      }
      co_await send_base(s, dec, w);
      *progressed = true;
      // Acknowledgements are read by a coroutine of their own while this one sends.
      reader_done = false;
      asio::co_spawn(ex, read_acks(s, dec), [&](std::exception_ptr e) {
        reader_done = true;
        if (e && !failure) failure = e;
        if (!failure) failure = std::make_exception_ptr(SessionError("the server closed"));
        wake.cancel();
      });
      co_await send_records(s, &failure);
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
    done = true;
    boost::system::error_code ignored;
    sock.close(ignored);
    watchdog.cancel();
    while (!reader_done || !watch_done) {
      wake.expires_after(std::chrono::milliseconds(1));
      boost::system::error_code ec;
      co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    wake_ = nullptr;
    acked_pos_ = {0, 0};
    in_flight_.clear();
    pending_ = Pending();
    if (failure) std::rethrow_exception(failure);
  }

  asio::awaitable<void> watch(asio::steady_timer& timer, tcp::socket& sock, bool* done) {
    while (!*done) {
      timer.expires_at(std::min(deadline_, Clock::now() + std::chrono::milliseconds(200)));
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (*done) break;
      if (Clock::now() >= deadline_) {
        timed_out_ = true;
        boost::system::error_code ignored;
        sock.close(ignored);
        break;
      }
    }
  }

  // The deadline for the server's next answer: timeout after the oldest thing it owes.
  void expect_answer() { deadline_ = Clock::now() + opts_.link.timeout; }
  void nothing_owed() { deadline_ = Clock::time_point::max(); }

  template <class Stream>
  asio::awaitable<void> write_frame(Stream& s, const std::vector<uint8_t>& frame) {
    co_await asio::async_write(s, asio::buffer(frame), asio::use_awaitable);
    std::lock_guard lk(mu_);
    status_.wire_bytes += frame.size();
  }

  template <class Stream>
  asio::awaitable<proto::Frame> read_frame(Stream& s, proto::FrameDecoder& dec) {
    std::array<uint8_t, 4096> buf;
    for (;;) {
      proto::Frame f;
      auto got = dec.next(&f);
      if (!got) throw SessionError(got.status().message());
      if (*got) {
        if (f.type == MessageType::kError) {
          auto e = proto::decode_error(f);
          throw SessionError(e ? fmt::format("the server refused: {}: {}",
                                             proto::error_code_name(e->code), e->message)
                               : e.status().message());
        }
        co_return f;
      }
      size_t n = 0;
      try {
        n = co_await s.async_read_some(asio::buffer(buf), asio::use_awaitable);
      } catch (const boost::system::system_error& e) {
        if (timed_out_)
          throw SessionError(fmt::format(
              "the server did not answer within {}s",
              std::chrono::duration_cast<std::chrono::seconds>(opts_.link.timeout).count()));
        throw SessionError(fmt::format("connection to {}:{}: {}", opts_.link.host, opts_.link.port,
                                       e.code().message()));
      }
      dec.feed(std::span<const uint8_t>(buf.data(), n));
    }
  }

  template <class Stream>
  asio::awaitable<proto::Welcome> open(Stream& s, proto::FrameDecoder& dec) {
    const proto::Hello hello{proto::kOldestVersion, proto::kVersion, proto::Purpose::kShip,
                             opts_.link.volume, opts_.link.token};
    const std::vector<uint8_t> frame =
        proto::encode_frame(MessageType::kHello, proto::encode(hello));
    expect_answer();
    co_await write_frame(s, frame);
    const proto::Frame f = co_await read_frame(s, dec);
    auto w = proto::decode_welcome(f);
    if (!w) throw SessionError(w.status().message());
    if (opts_.form.key && w->version < 2)
      throw SessionError(
          fmt::format("the log server speaks protocol version {}, which cannot hold sealed copies "
                      "(ship-key=); upgrade rewind-server",
                      w->version));
    co_return *w;
  }

  // Sends the base snapshot unless the server holds it, and positions the tail after
  // what the server holds.
  template <class Stream>
  asio::awaitable<void> send_base(Stream& s, proto::FrameDecoder& dec, const proto::Welcome& w) {
    const auto m = owner_.snapshot();
    auto plan = plan_copy(w, *m, owner_.durable_position().seq, opts_.form.key.has_value(),
                          fmt::format("the server's volume '{}'", opts_.link.volume),
                          "give this one another ship-volume=");
    if (!plan) throw SessionError(plan.status().message());
    if (!plan->warning.empty() && !warned_form_) {
      warned_form_ = true;
      log(LogLevel::kWarning, plan->warning);
    }
    if (plan->send_base) {
      {
        std::lock_guard lk(mu_);
        status_.phase = "base";
      }
      proto::BaseBegin bb = base_begin_of(*m);
      bb.flags = opts_.form.key ? proto::kFlagSealedBase : 0;
      const std::vector<uint8_t> begin =
          proto::encode_frame(MessageType::kBaseBegin, proto::encode(bb));
      expect_answer();
      co_await write_frame(s, begin);
      proto::Frame f = co_await read_frame(s, dec);
      auto a = proto::decode_ack(f);
      if (!a) throw SessionError(a.status().message());
      auto base = File::open(base_path(dir_, m->base_file), O_RDONLY);
      if (!base) throw SessionError(base.status().message());
      std::vector<uint8_t> chunk;
      const auto started = Clock::now();
      ShippedBaseRuns runs(*base, *m, opts_.form.key ? &*opts_.form.key : nullptr);
      for (uint64_t at = a->base_bytes; at < runs.size();) {
        auto run = runs.next(at, &chunk);
        if (!run) throw SessionError(run.status().message());
        const std::vector<uint8_t> frame =
            run->zero ? proto::encode_frame(MessageType::kBaseZero,
                                            proto::encode(proto::BaseZero{at, run->length}))
                      : proto::encode_frame(MessageType::kBaseData,
                                            proto::encode(proto::BaseData{at, chunk}));
        co_await pace(frame.size());
        expect_answer();
        co_await write_frame(s, frame);
        f = co_await read_frame(s, dec);
        a = proto::decode_ack(f);
        if (!a) throw SessionError(a.status().message());
        auto next = runs.went_on(at, a->base_bytes);
        if (!next) throw SessionError(next.status().message());
        at = *next;
        std::lock_guard lk(mu_);
        status_.durable_seq = owner_.durable_position().seq;
      }
      log(LogLevel::kInfo,
          fmt::format("sent the base snapshot ({} bytes) in {:.1f}s", m->image_size,
                      std::chrono::duration<double>(Clock::now() - started).count()));
    }
    const uint64_t acked = plan->after_seq;
    nothing_owed();
    tail_.seek(acked);
    acked_pos_ = {0, 0};
    {
      std::lock_guard lk(mu_);
      status_.acked_seq = acked;
      status_.phase = "records";
    }
    owner_.note_shipped(acked);
  }

  // ---- records ----------------------------------------------------------------------
  // Reads the next frame's records (durable ones, up to frame_bytes) into pending_.
  void fill_pending(const Manifest& m, uint64_t durable) {
    if (!pending_.empty()) return;
    std::vector<RecordHeader> hs;
    std::vector<std::vector<uint8_t>> payloads;
    uint64_t bytes = 0;
    while (bytes < opts_.frame_bytes) {
      RecordHeader h;
      std::vector<uint8_t> p;
      auto more = tail_.next(m, durable, &h, &p);
      if (!more) throw SessionError(more.status().message());
      if (!*more) break;
      bytes += format::record_span(h.payload_length);
      if (!encoder_) encoder_.emplace(opts_.form, m.volume_id);
      encoder_->encode(&h, &p);
      hs.push_back(h);
      payloads.push_back(std::move(p));
    }
    if (hs.empty()) return;
    std::vector<std::span<const uint8_t>> ps(payloads.begin(), payloads.end());
    pending_.frame = proto::encode_frame(MessageType::kRecords, proto::encode_records(hs, ps));
    pending_.meta.last_seq = hs.back().seq;
    pending_.meta.first_time_ns = hs.front().time_ns;
    pending_.meta.record_bytes = bytes;
    pending_.meta.wire_bytes = pending_.frame.size();
    pending_.meta.end = tail_.position();
  }

  uint64_t in_flight_bytes() const {
    uint64_t n = 0;
    for (const InFlight& f : in_flight_) n += f.wire_bytes;
    return n;
  }

  // Waits until the rate cap lets the next frame go, and takes its `bytes`.
  asio::awaitable<void> pace(uint64_t bytes) {
    for (;;) {
      const Clock::duration wait = cap_.wait(Clock::now());
      if (wait == Clock::duration::zero()) break;
      asio::steady_timer t(co_await asio::this_coro::executor);
      t.expires_after(wait);
      boost::system::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    cap_.take(bytes);
  }

  template <class Stream>
  asio::awaitable<void> send_records(Stream& s, std::exception_ptr* failure) {
    auto last_sent = Clock::now();
    bool ping_owed = false;
    while (!stopping() && !*failure) {
      const Journal::Position durable = owner_.durable_position();
      const auto m = owner_.snapshot();  // after the position: it lists its segment
      fill_pending(*m, durable.seq);
      const uint64_t flying = in_flight_bytes();
      if (!pending_.empty() &&
          (in_flight_.empty() || flying + pending_.meta.wire_bytes <= window_.bytes())) {
        co_await pace(pending_.meta.wire_bytes);
        Pending p = std::move(pending_);
        pending_ = Pending();
        p.meta.sent = Clock::now();
        p.meta.window_limited = flying + 2 * p.meta.wire_bytes > window_.bytes();
        if (in_flight_.empty()) expect_answer();
        in_flight_.push_back(p.meta);
        co_await write_frame(s, p.frame);
        last_sent = Clock::now();
        update_lag(*m, durable);
        continue;
      }
      if (in_flight_.empty() && !ping_owed && Clock::now() - last_sent >= opts_.ping) {
        // Keeps an idle link open (the server drops silent peers) and checks it.
        const proto::Ping ping{++ping_nonce_, wall_clock_ns()};
        const std::vector<uint8_t> frame =
            proto::encode_frame(MessageType::kPing, proto::encode(ping));
        expect_answer();
        co_await write_frame(s, frame);
        last_sent = Clock::now();
        ping_owed_ = true;
      }
      ping_owed = ping_owed_;
      update_lag(*m, durable);
      wake_->expires_after(opts_.poll);
      boost::system::error_code ec;
      co_await wake_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  template <class Stream>
  asio::awaitable<void> read_acks(Stream& s, proto::FrameDecoder& dec) {
    for (;;) {
      const proto::Frame f = co_await read_frame(s, dec);
      if (f.type == MessageType::kPong) {
        ping_owed_ = false;
        if (in_flight_.empty()) nothing_owed();
        continue;
      }
      auto a = proto::decode_ack(f);
      if (!a) throw SessionError(fmt::format("from the server: {}", a.status().message()));
      on_ack(*a);
      if (wake_) wake_->cancel();
    }
  }

  void on_ack(const proto::Ack& a) {
    const auto now = Clock::now();
    // An ACK covers whole frames in flight, never more than was sent: a server that
    // claims more (a lying or broken one) would make retention drop local records it
    // never had.
    if (in_flight_.empty() || a.durable_seq < in_flight_.front().last_seq ||
        a.durable_seq > in_flight_.back().last_seq)
      throw SessionError(fmt::format(
          "the server acknowledged seq {}, but the frames in flight hold seq {}; a server "
          "acknowledges only what it was sent: is something else answering at {}:{}?",
          a.durable_seq,
          in_flight_.empty()
              ? std::string("none")
              : fmt::format("{}..{}", in_flight_.front().last_seq, in_flight_.back().last_seq),
          opts_.link.host, opts_.link.port));
    uint64_t acked_bytes = 0;
    bool limited = false;
    double rtt = 0;
    while (!in_flight_.empty() && in_flight_.front().last_seq <= a.durable_seq) {
      const InFlight& f = in_flight_.front();
      acked_bytes += f.record_bytes;
      limited = limited || f.window_limited;
      rtt = std::chrono::duration<double>(now - f.sent).count();
      acked_pos_ = f.end;
      in_flight_.pop_front();
    }
    if (in_flight_.empty() && !ping_owed_)
      nothing_owed();
    else
      expect_answer();
    const bool cut = window_.on_ack(rtt, acked_bytes, limited, now);
    owner_.note_shipped(a.durable_seq);
    std::lock_guard lk(mu_);
    status_.acked_seq = a.durable_seq;
    status_.record_bytes += acked_bytes;
    status_.window = window_.bytes();
    status_.rtt_ms = window_.smoothed_rtt() * 1e3;
    if (cut) ++status_.backoffs;
  }

  void lag_while_disconnected() {
    const Journal::Position durable = owner_.durable_position();
    const auto m = owner_.snapshot();
    const uint64_t acked = acked_seq();
    uint64_t oldest = 0;
    if (durable.seq > acked) {
      // The oldest record the server lacks: read it (the next session seeks again).
      RecordHeader h;
      std::vector<uint8_t> p;
      tail_.seek(acked);
      auto got = tail_.next(*m, durable.seq, &h, &p);
      if (got && *got) oldest = h.time_ns;
    }
    update_lag(*m, durable, oldest);
  }

  // The lag: journal bytes from what the server acknowledged to the durable end, and
  // the age of the oldest record it lacks (that of the first frame in flight or
  // pending, unless `oldest` is given).
  void update_lag(const Manifest& m, const Journal::Position& durable, uint64_t oldest = 0) {
    const uint64_t acked = acked_seq();
    const uint64_t bytes =
        durable.seq <= acked ? 0 : bytes_to_durable(m, acked_pos_, acked, durable);
    if (durable.seq > acked && oldest == 0)
      oldest = !in_flight_.empty() ? in_flight_.front().first_time_ns
               : !pending_.empty() ? pending_.meta.first_time_ns
                                   : 0;
    const double lag = lag_seconds_at(oldest, wall_clock_ns());
    {
      std::lock_guard lk(mu_);
      status_.durable_seq = durable.seq;
      status_.lag_bytes = bytes;
      lag_oldest_ns_ = lag > 0 ? oldest : 0;
    }
    const auto t = Clock::now();
    if (lag > std::chrono::duration<double>(opts_.lag_warn).count() &&
        t - last_lag_warning_ > std::chrono::minutes(1)) {
      last_lag_warning_ = t;
      log(LogLevel::kWarning,
          fmt::format("the log server is {:.0f}s ({} bytes) behind, past ship-lag-warn={}s; "
                      "the local segments are kept until it has them",
                      lag, bytes,
                      std::chrono::duration_cast<std::chrono::seconds>(opts_.lag_warn).count()));
    }
  }

  JournalOwner& owner_;  // the served volume
  const std::string dir_;
  const ShipperOptions opts_;
  Logger logger_;
  std::thread thread_;
  mutable std::mutex mu_;  // guards stopping_, status_ and lag_oldest_ns_
  std::condition_variable cv_;
  bool stopping_ = false;
  ShipperStatus status_;
  uint64_t lag_oldest_ns_ = 0;  // time of the oldest record the server lacks (0: none)
  // The shipper thread's alone:
  JournalTail tail_;
  std::optional<ShipEncoder> encoder_;  // ship-compress= and ship-key=
  bool warned_form_ = false;
  Pending pending_;
  std::deque<InFlight> in_flight_;
  std::pair<uint64_t, uint64_t> acked_pos_{0, 0};
  asio::steady_timer* wake_ = nullptr;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  bool ping_owed_ = false;
  uint64_t ping_nonce_ = 0;
  CongestionWindow window_;
  RateCap cap_;
  Clock::time_point last_lag_warning_{};
  // Last, so that it goes first: a stop() leaves coroutines suspended in it, which
  // refer to the members above.
  asio::io_context io_;
};

Shipper::Shipper(JournalOwner& owner, std::string journal_dir, ShipperOptions opts, Logger logger) {
  if (opts.bucket)
    bucket_ = std::make_unique<BucketImpl>(owner, std::move(journal_dir), std::move(opts),
                                           std::move(logger));
  else
    impl_ =
        std::make_unique<Impl>(owner, std::move(journal_dir), std::move(opts), std::move(logger));
}
Shipper::~Shipper() {
  stop();
}
void Shipper::stop() {
  if (impl_) impl_->stop();
  if (bucket_) bucket_->stop();
}
ShipperStatus Shipper::status() const {
  return impl_ ? impl_->status() : bucket_->status();
}

}  // namespace rwd
