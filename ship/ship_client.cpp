// <utility> first: Boost 1.74's asio headers use std::exchange without including it.
#include <utility>

#include "rewind/ship_client.h"

#include <fcntl.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <optional>

#include <fmt/format.h>

#include "rewind/file.h"
#include "rewind/journal.h"
#include "rewind/manifest.h"
#include "rewind/segment.h"

namespace rwd {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using proto::MessageType;

namespace {

const char* error_name(proto::ErrorCode c) {
  switch (c) {
    case proto::ErrorCode::kMalformed:
      return "MALFORMED";
    case proto::ErrorCode::kNoVersion:
      return "VERSION";
    case proto::ErrorCode::kUnauthorized:
      return "UNAUTHORIZED";
    case proto::ErrorCode::kReadOnly:
      return "READ_ONLY";
    case proto::ErrorCode::kNoVolume:
      return "NO_VOLUME";
    case proto::ErrorCode::kGap:
      return "GAP";
    case proto::ErrorCode::kConflict:
      return "CONFLICT";
    case proto::ErrorCode::kBusy:
      return "BUSY";
    case proto::ErrorCode::kTimeout:
      return "TIMEOUT";
    case proto::ErrorCode::kServer:
      return "SERVER";
    case proto::ErrorCode::kTooLarge:
      return "TOO_LARGE";
  }
  return "unknown";
}

// A blocking connection that sends and receives frames, over TLS or plain TCP.
class Connection {
 public:
  Status connect(const ShipOptions& o) {
    try {
      tcp::resolver resolver(io_);
      auto endpoints = resolver.resolve(o.host, std::to_string(o.port));
      if (o.ca_file.empty()) {
        plain_.emplace(io_);
        asio::connect(*plain_, endpoints);
        plain_->set_option(tcp::no_delay(true));
      } else {
        tls_ctx_.emplace(ssl::context::tls_client);
        tls_ctx_->load_verify_file(o.ca_file);
        tls_.emplace(io_, *tls_ctx_);
        tls_->set_verify_mode(ssl::verify_peer);
        const std::string name = o.server_name.empty() ? o.host : o.server_name;
        tls_->set_verify_callback(ssl::host_name_verification(name));
        SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());
        asio::connect(tls_->lowest_layer(), endpoints);
        tls_->lowest_layer().set_option(tcp::no_delay(true));
        tls_->handshake(ssl::stream_base::client);
      }
      set_timeout(o.timeout);
    } catch (const boost::system::system_error& e) {
      return Status::io_error(
          fmt::format("cannot connect to {}:{}: {}", o.host, o.port, e.code().message()),
          e.code().value());
    }
    return Status::ok();
  }

  Status send(MessageType type, const std::vector<uint8_t>& payload) {
    auto frame = proto::encode_frame(type, payload);
    boost::system::error_code ec;
    if (plain_)
      asio::write(*plain_, asio::buffer(frame), ec);
    else
      asio::write(*tls_, asio::buffer(frame), ec);
    if (ec)
      return Status::io_error(
          fmt::format("sending {}: {}", proto::message_type_name(type), ec.message()), ec.value());
    return Status::ok();
  }

  // The next frame; an ERROR from the server becomes a status.
  Result<proto::Frame> read() {
    for (;;) {
      proto::Frame f;
      auto got = dec_.next(&f);
      if (!got) return got.status();
      if (*got) {
        if (f.type != MessageType::kError) return f;
        auto e = proto::decode_error(f);
        if (!e) return e.status();
        return Status::invalid(
            fmt::format("the server refused: {}: {}", error_name(e->code), e->message));
      }
      boost::system::error_code ec;
      const size_t n = plain_ ? plain_->read_some(asio::buffer(buf_), ec)
                              : tls_->read_some(asio::buffer(buf_), ec);
      if (ec)
        return Status::io_error(fmt::format("reading from the server: {}", ec.message()),
                                ec.value());
      dec_.feed(std::span<const uint8_t>(buf_.data(), n));
    }
  }

 private:
  void set_timeout(std::chrono::nanoseconds t) {
    const int fd = plain_ ? plain_->native_handle() : tls_->lowest_layer().native_handle();
    struct timeval tv {};
    tv.tv_sec = static_cast<time_t>(std::chrono::duration_cast<std::chrono::seconds>(t).count());
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  asio::io_context io_;
  std::optional<tcp::socket> plain_;
  std::optional<ssl::context> tls_ctx_;
  std::optional<ssl::stream<tcp::socket>> tls_;
  proto::FrameDecoder dec_;
  std::array<uint8_t, 64 * 1024> buf_;
};

Result<proto::Ack> await_ack(Connection& c) {
  auto f = c.read();
  if (!f) return f.status();
  return proto::decode_ack(*f);
}

}  // namespace

proto::BaseBegin base_begin_of(const Manifest& m) {
  proto::BaseBegin b;
  std::copy(m.volume_id.begin(), m.volume_id.end(), b.volume_id.begin());
  b.image_size = m.image_size;
  b.base_seq = m.base_seq;
  b.base_time_ns = m.base_time_ns;
  b.created_ns = m.created_ns;
  return b;
}

Result<proto::Ack> ship_journal(const std::string& journal_dir, const ShipOptions& opts,
                                const Logger& logger) {
  auto m = Manifest::load(journal_dir);
  if (!m) return m.status();
  Connection c;
  REWIND_RETURN_IF_ERROR(c.connect(opts));
  REWIND_RETURN_IF_ERROR(
      c.send(MessageType::kHello,
             proto::encode(proto::Hello{proto::kVersion, proto::kVersion, proto::Purpose::kShip,
                                        opts.volume, opts.token})));
  auto wf = c.read();
  if (!wf) return wf.status();
  auto w = proto::decode_welcome(*wf);
  if (!w) return w.status();
  proto::Ack ack{w->durable_seq, w->base_bytes};
  const bool same_volume =
      std::equal(w->volume_id.begin(), w->volume_id.end(), m->volume_id.begin());
  const bool server_whole = w->image_size != 0 && w->base_bytes == w->image_size;
  if (server_whole && !same_volume)
    return Status::invalid(fmt::format(
        "the server holds another volume under the name '{}'; ship this one under another name",
        opts.volume));
  if (server_whole && w->durable_seq < m->base_seq)
    return Status::invalid(fmt::format(
        "the server holds volume '{}' up to seq {}, but {} starts at seq {} (its older records "
        "were folded into its base)",
        opts.volume, w->durable_seq, journal_dir, m->base_seq));
  // The base, unless the server holds it whole.
  if (!server_whole) {
    REWIND_RETURN_IF_ERROR(c.send(MessageType::kBaseBegin, proto::encode(base_begin_of(*m))));
    auto a = await_ack(c);
    if (!a) return a.status();
    auto base = File::open(base_path(journal_dir, m->base_file), O_RDONLY);
    if (!base) return base.status();
    std::vector<uint8_t> chunk;
    for (uint64_t at = a->base_bytes; at < m->image_size;) {
      chunk.resize(std::min<uint64_t>(proto::kMaxBaseChunk, m->image_size - at));
      REWIND_RETURN_IF_ERROR(base->pread_full(chunk, at));
      REWIND_RETURN_IF_ERROR(
          c.send(MessageType::kBaseData, proto::encode(proto::BaseData{at, chunk})));
      a = await_ack(c);
      if (!a) return a.status();
      at = a->base_bytes;
    }
    ack = *a;
    log_to(logger, LogLevel::kInfo,
           fmt::format("sent the base snapshot ({} bytes) of {}", m->image_size, journal_dir));
  }
  // The records after what the server holds, in frames of about records_per_frame_bytes.
  std::vector<RecordHeader> hs;
  std::vector<std::vector<uint8_t>> payloads;
  uint64_t bytes = 0;
  auto flush = [&]() -> Status {
    if (hs.empty()) return Status::ok();
    std::vector<std::span<const uint8_t>> ps(payloads.begin(), payloads.end());
    REWIND_RETURN_IF_ERROR(c.send(MessageType::kRecords, proto::encode_records(hs, ps)));
    auto a = await_ack(c);
    if (!a) return a.status();
    ack = *a;
    hs.clear(), payloads.clear(), bytes = 0;
    return Status::ok();
  };
  for (const ManifestSegment& seg : m->segments) {
    if (!seg.sealed) break;  // a stopped journal has none open
    if (seg.last_seq <= ack.durable_seq) continue;
    auto r = SegmentReader::open(segment_path(journal_dir, seg.file), true);
    if (!r) return r.status();
    RecordView rec;
    for (;;) {
      auto more = r->next(&rec);
      if (!more) return more.status();
      if (!*more) break;
      if (rec.header.seq <= ack.durable_seq) continue;
      hs.push_back(rec.header);
      payloads.emplace_back(rec.payload.begin(), rec.payload.end());
      bytes += format::record_span(rec.header.payload_length);
      if (bytes >= opts.records_per_frame_bytes) REWIND_RETURN_IF_ERROR(flush());
    }
  }
  REWIND_RETURN_IF_ERROR(flush());
  return ack;
}

}  // namespace rwd
