// <utility> first: Boost 1.74's asio headers use std::exchange without including it.
#include <utility>

#include "rewind/ship/ship_client.h"

#include <fcntl.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/format/manifest.h"
#include "rewind/format/segment.h"
#include "rewind/journal/journal.h"
#include "rewind/ship/store.h"
#include "tls_client.h"

namespace rwd {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using proto::MessageType;

namespace {

// A blocking connection that sends and receives frames, over TLS or plain TCP.
class Connection {
 public:
  Status connect(const ShipOptions& o) {
    try {
      tcp::resolver resolver(io_);
      auto endpoints = resolver.resolve(o.host, std::to_string(o.port));
      if (plain_link_allowed(o, endpoints)) {
        plain_.emplace(io_);
        asio::connect(*plain_, endpoints);
        plain_->set_option(tcp::no_delay(true));
      } else {
        tls_ctx_.emplace(ssl::context::tls_client);
        boost::system::error_code ec;
        trust_only(*tls_ctx_, o, ec);
        if (ec)
          return Status::invalid(fmt::format(
              "{}: {}", o.ca_file.empty() ? "the system's trust store" : o.ca_file, ec.message()));
        tls_.emplace(io_, *tls_ctx_);
        verify_server(*tls_, o);
        asio::connect(tls_->lowest_layer(), endpoints);
        tls_->lowest_layer().set_option(tcp::no_delay(true));
        boost::system::error_code hs;
        tls_->handshake(ssl::stream_base::client, hs);
        if (hs)
          return Status::io_error(fmt::format("cannot connect to {}:{}: the TLS handshake failed "
                                              "({}); nothing was sent. {}",
                                              o.host, o.port, hs.message(), tls_advice(o)),
                                  hs.value());
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
            fmt::format("the server refused: {}: {}", proto::error_code_name(e->code), e->message));
      }
      boost::system::error_code ec;
      const size_t n = plain_ ? plain_->read_some(asio::buffer(buf_), ec)
                              : tls_->read_some(asio::buffer(buf_), ec);
      // A signal (a stop and continue, a terminal resized) ends a read of a socket with
      // a timeout, which the system does not restart.
      if (ec == asio::error::interrupted) continue;
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

// Connects and opens a session for `purpose` on opts.volume: HELLO, then the WELCOME.
Result<proto::Welcome> open_session(Connection& c, const ShipOptions& opts,
                                    proto::Purpose purpose) {
  REWIND_RETURN_IF_ERROR(c.connect(opts));
  REWIND_RETURN_IF_ERROR(
      c.send(MessageType::kHello, proto::encode(proto::Hello{proto::kOldestVersion, proto::kVersion,
                                                             purpose, opts.volume, opts.token})));
  auto wf = c.read();
  if (!wf) return wf.status();
  auto w = proto::decode_welcome(*wf);
  if (w && w->purpose != purpose)
    return Status::invalid(
        fmt::format("the server at {}:{} answered a session for another purpose than the one asked",
                    opts.host, opts.port));
  return w;
}

Result<proto::Ack> await_ack(Connection& c) {
  auto f = c.read();
  if (!f) return f.status();
  return proto::decode_ack(*f);
}

}  // namespace

Result<BaseRun> next_base_run(const File& base, uint64_t at, uint64_t size,
                              std::vector<uint8_t>* data) {
  // Where the next data is: past a hole, the hole is a run of zeroes. A file system
  // without SEEK_DATA gives all of it as data.
  off_t next_data = ::lseek(base.fd(), static_cast<off_t>(at), SEEK_DATA);
  if (next_data < 0) next_data = errno == ENXIO ? static_cast<off_t>(size) : static_cast<off_t>(at);
  if (static_cast<uint64_t>(next_data) > at)
    return BaseRun{true, std::min<uint64_t>(static_cast<uint64_t>(next_data), size) - at};
  off_t hole = ::lseek(base.fd(), static_cast<off_t>(at), SEEK_HOLE);
  if (hole < 0) hole = static_cast<off_t>(size);
  const uint64_t n =
      std::min<uint64_t>({static_cast<uint64_t>(hole) - at, proto::kMaxBaseChunk, size - at});
  data->resize(n);
  REWIND_RETURN_IF_ERROR(base.pread_full(*data, at));
  const bool zero = std::all_of(data->begin(), data->end(), [](uint8_t b) { return b == 0; });
  return BaseRun{zero, n};
}

ShippedBaseRuns::ShippedBaseRuns(const File& base, const Manifest& m, const SealKey* key)
    : base_(base),
      m_(m),
      key_(key),
      size_(proto::stored_base_bytes(m.image_size, key ? proto::kFlagSealedBase : 0)) {}

Result<BaseRun> ShippedBaseRuns::next(uint64_t at, std::vector<uint8_t>* data) {
  if (!key_) return next_base_run(base_, at, size_, data);
  const uint64_t index = at / kSealedSlotBytes;
  const uint64_t within = at % kSealedSlotBytes;
  if (index != slot_index_) {
    const uint64_t start = index * kSealedChunkBytes;
    plain_.resize(std::min(kSealedChunkBytes, m_.image_size - start));
    size_t got = 0;
    REWIND_RETURN_IF_ERROR(base_.pread_full(plain_, start, &got));
    std::fill(plain_.begin() + static_cast<long>(got), plain_.end(), uint8_t{0});  // a short file
    seal_base_chunk(*key_, m_.volume_id, m_.base_seq, index, plain_, &compress_, &slot_);
    slot_index_ = index;
  }
  if (within < slot_.size()) {
    data->assign(slot_.begin() + static_cast<long>(within), slot_.end());
    return BaseRun{false, data->size()};
  }
  return BaseRun{true, kSealedSlotBytes - within};
}

Result<uint64_t> ShippedBaseRuns::went_on(uint64_t at, uint64_t base_bytes) const {
  if (base_bytes <= at || base_bytes > size_)
    return Status::corruption(
        fmt::format("the receiver acknowledged {} bytes of the {}-byte base after a run at {}",
                    base_bytes, size_, at));
  return base_bytes;
}

Result<CopyPlan> plan_copy(const proto::Welcome& w, const Manifest& m, uint64_t durable_seq,
                           bool sealed, std::string_view where, std::string_view elsewhere) {
  const bool same = std::equal(w.volume_id.begin(), w.volume_id.end(), m.volume_id.begin());
  const bool whole =
      w.image_size != 0 && w.base_bytes == proto::stored_base_bytes(w.image_size, w.flags);
  if (!whole) return CopyPlan{true, m.base_seq, {}};
  if (!same)
    return Status::invalid(fmt::format("{} is the copy of another volume ({}); {}", where,
                                       volume_id_hex(w.volume_id), elsewhere));
  if (w.durable_seq > durable_seq)
    return Status::invalid(fmt::format(
        "{} holds seq {}, beyond this journal's newest durable seq {}: it is not this volume's "
        "copy (another journal shipping under its name, or a store that lies); nothing is taken "
        "as shipped",
        where, w.durable_seq, durable_seq));
  if (w.durable_seq < m.base_seq)
    return Status::invalid(fmt::format(
        "{} holds this volume up to seq {}, but this journal starts after seq {} (its older "
        "records were folded into its base); {}",
        where, w.durable_seq, m.base_seq, elsewhere));
  CopyPlan plan{false, w.durable_seq, {}};
  const bool copy_sealed = (w.flags & proto::kFlagSealedBase) != 0;
  if (copy_sealed != sealed)
    plan.warning = sealed ? fmt::format(
                                "{} holds this volume's base snapshot in the clear (shipped before "
                                "ship-key=): new records go sealed, what was shipped before stays "
                                "readable there; for a wholly sealed copy, {}",
                                where, elsewhere)
                          : fmt::format(
                                "{} holds this volume sealed, and ship-key= is not given: new "
                                "records go in the clear",
                                where);
  return plan;
}

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
  auto w = open_session(c, opts, proto::Purpose::kShip);
  if (!w) return w.status();
  // A stopped journal: every record it holds is durable.
  const uint64_t newest = m->segments.empty() ? m->base_seq : m->segments.back().last_seq;
  auto plan = plan_copy(*w, *m, std::max(newest, m->base_seq), false,
                        fmt::format("the server's volume '{}'", opts.volume),
                        "ship this one under another name");
  if (!plan) return plan.status();
  proto::Ack ack{plan->after_seq, w->base_bytes};
  if (!plan->warning.empty()) log_to(logger, LogLevel::kWarning, plan->warning);
  // The base, unless the server holds it whole.
  if (plan->send_base) {
    REWIND_RETURN_IF_ERROR(c.send(MessageType::kBaseBegin, proto::encode(base_begin_of(*m))));
    auto a = await_ack(c);
    if (!a) return a.status();
    auto base = File::open(base_path(journal_dir, m->base_file), O_RDONLY);
    if (!base) return base.status();
    ShippedBaseRuns runs(*base, *m, nullptr);
    std::vector<uint8_t> chunk;
    for (uint64_t at = a->base_bytes; at < runs.size();) {
      auto run = runs.next(at, &chunk);
      if (!run) return run.status();
      REWIND_RETURN_IF_ERROR(
          run->zero
              ? c.send(MessageType::kBaseZero, proto::encode(proto::BaseZero{at, run->length}))
              : c.send(MessageType::kBaseData, proto::encode(proto::BaseData{at, chunk})));
      a = await_ack(c);
      if (!a) return a.status();
      auto next = runs.went_on(at, a->base_bytes);
      if (!next) return next.status();
      at = *next;
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
    r->keep_sealed();  // what is sent is the stored form
    RecordView rec;
    for (;;) {
      auto more = r->next(&rec);
      if (!more) return more.status();
      if (!*more) break;
      if (rec.header.seq <= ack.durable_seq) continue;
      hs.push_back(rec.header);
      payloads.emplace_back(rec.stored.begin(), rec.stored.end());
      bytes += format::record_span(rec.header.payload_length);
      if (bytes >= opts.records_per_frame_bytes) REWIND_RETURN_IF_ERROR(flush());
    }
  }
  REWIND_RETURN_IF_ERROR(flush());
  return ack;
}

Status parse_host_port(std::string_view text, bool port_required, std::string* host,
                       uint16_t* port) {
  std::string_view h = text;
  std::optional<std::string_view> p;
  const size_t colon = text.rfind(':');
  // A colon inside brackets is part of an IPv6 address, not the port's separator.
  if (colon != std::string_view::npos && text.find(']', colon) == std::string_view::npos) {
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) return Status::invalid("no host");
  if (!p && port_required) return Status::invalid("no port");
  uint64_t value = 0;
  if (p) {
    auto [end, ec] = std::from_chars(p->data(), p->data() + p->size(), value);
    if (p->empty() || ec != std::errc() || end != p->data() + p->size() || value == 0 ||
        value > 65535)
      return Status::invalid("bad port");
    *port = static_cast<uint16_t>(value);
  }
  *host = std::string(h);
  return Status::ok();
}

bool is_remote_uri(std::string_view text) {
  return text.starts_with("rewind://");
}

Status parse_remote_uri(std::string_view uri, ShipOptions* opts) {
  const auto bad = [&](const char* why) {
    return Status::invalid(fmt::format(
        "{}: {}; give rewind://HOST[:PORT]/VOLUME, e.g. rewind://logs.example:7420/db1", uri, why));
  };
  if (!is_remote_uri(uri)) return bad("not a rewind:// URI");
  std::string_view rest = uri.substr(9);
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return bad("no volume");
  const std::string_view volume = rest.substr(slash + 1);
  std::string host;
  uint16_t port = 7420;
  if (Status st = parse_host_port(rest.substr(0, slash), false, &host, &port); !st)
    return bad(st.message().c_str());
  if (Status st = proto::check_volume_name(volume); !st) return bad(st.message().c_str());
  opts->host = std::move(host);
  opts->port = port;
  opts->volume = std::string(volume);
  return Status::ok();
}

namespace {

// Connects and opens a read of opts.volume; the WELCOME says what the server holds.
Result<proto::Welcome> open_read(Connection& c, const ShipOptions& opts) {
  if (Status st = proto::check_token(opts.token); !st)
    return Status::invalid(fmt::format(
        "a token is needed to read from a log server (--token or REWIND_TOKEN): {}", st.message()));
  return open_session(c, opts, proto::Purpose::kRead);
}

}  // namespace

Result<JournalReport> remote_report(const ShipOptions& opts, bool scan) {
  Connection c;
  auto w = open_read(c, opts);
  if (!w) return w.status();
  REWIND_RETURN_IF_ERROR(c.send(MessageType::kInfo, proto::encode(proto::InfoRequest{scan})));
  auto f = c.read();
  if (!f) return f.status();
  auto r = proto::decode_report(*f);
  if (!r) return r.status();
  r->report.dir = fmt::format("rewind://{}:{}/{}", opts.host, opts.port, opts.volume);
  return std::move(r->report);
}

Result<RemoteRestore> remote_restore(const ShipOptions& opts, const Target& target,
                                     const std::string& out, const RestoreOptions& ro) {
  if (!ro.force && ::access(out.c_str(), F_OK) == 0)
    return Status::invalid(fmt::format("{} exists (RestoreOptions::force replaces it)", out));
  Connection c;
  auto w = open_read(c, opts);
  if (!w) return w.status();
  REWIND_RETURN_IF_ERROR(
      c.send(MessageType::kRestore, proto::encode(proto::RestoreRequest{target})));
  auto vf = c.read();
  if (!vf) return vf.status();
  auto view = proto::decode_view(*vf);
  if (!view) return view.status();
  // The point served must be of the volume the WELCOME described.
  if (view->image_size != w->image_size || view->seq < w->base_seq)
    return Status::invalid(fmt::format(
        "the server described volume '{}' as {} bytes from seq {} but serves a point of {} bytes "
        "at seq {}; nothing was written",
        opts.volume, w->image_size, w->base_seq, view->image_size, view->seq));
  RemoteRestore res;
  res.view = *view;
  res.wire_bytes = proto::kHeaderSize + vf->payload.size();
  const std::string tmp = out + ".rewind-tmp";
  auto file = create_temp_file(tmp);
  if (!file) return file.status();
  auto body = [&]() -> Status {
    REWIND_RETURN_IF_ERROR(file->truncate(view->image_size));
    uint64_t at = 0;
    for (;;) {
      auto f = c.read();
      if (!f) return f.status();
      res.wire_bytes += proto::kHeaderSize + f->payload.size();
      if (f->type == MessageType::kEnd) {
        auto e = proto::decode_end(*f);
        if (!e) return e.status();
        res.end = *e;
        break;
      }
      auto x = proto::decode_extent(*f);
      if (!x) return x.status();
      if (x->offset != at || x->length > view->image_size - at)
        return Status::invalid(fmt::format(
            "the server sent a run of {} bytes at offset {}, expected one at {} within {} bytes",
            x->length, x->offset, at, view->image_size));
      if (!x->zero) REWIND_RETURN_IF_ERROR(file->pwrite_full(x->data, x->offset));
      at += x->length;
      if (ro.progress) ro.progress(at, view->image_size);
    }
    if (at != view->image_size || res.end.data_bytes + res.end.zero_bytes != at)
      return Status::invalid(fmt::format(
          "the server ended the volume after {} of {} bytes ({} data and {} zero bytes said)", at,
          view->image_size, res.end.data_bytes, res.end.zero_bytes));
    REWIND_RETURN_IF_ERROR(file->sync());
    REWIND_RETURN_IF_ERROR(file->close());
    if (::rename(tmp.c_str(), out.c_str()) != 0)
      return Status::io_error(fmt::format("cannot rename {} to {}", tmp, out), errno);
    return sync_dir(parent_dir(out));
  };
  Status st = body();
  if (!st) {
    ::unlink(tmp.c_str());
    return st;
  }
  return res;
}

Status remote_fetch(const ShipOptions& opts, const std::string& dir) {
  Connection c;
  auto w = open_read(c, opts);
  if (!w) return w.status();
  if (w->version < 2)
    return Status::invalid(fmt::format(
        "the server at {}:{} speaks protocol version {}, which cannot send a sealed copy; "
        "upgrade rewind-server",
        opts.host, opts.port, w->version));
  REWIND_RETURN_IF_ERROR(c.send(MessageType::kFetch, {}));
  const std::string parent = parent_dir(dir);
  const std::string name = std::filesystem::path(dir).filename().string();
  std::unique_ptr<StoredVolume> vol;
  auto body = [&]() -> Status {
    for (;;) {
      auto f = c.read();
      if (!f) return f.status();
      Result<proto::Ack> ack = proto::Ack{};
      if (f->type == MessageType::kEnd) {
        auto e = proto::decode_end(*f);
        if (!e) return e.status();
        if (!vol || !vol->has_base())
          return Status::invalid("the server ended the volume before its base snapshot was whole");
        return vol->close();
      }
      if (f->type == MessageType::kBaseBegin) {
        auto b = proto::decode_base_begin(*f);
        if (!b) return b.status();
        if (vol || !std::equal(b->volume_id.begin(), b->volume_id.end(), w->volume_id.begin()))
          return Status::invalid("the server sent a second base, or one of another volume");
        auto v = StoredVolume::open(parent, name, true, {});
        if (!v) return v.status();
        vol = std::move(*v);
        ack = vol->begin_base(*b);
      } else if (!vol) {
        return Status::invalid(
            fmt::format("the server sent {} before BASE_BEGIN", proto::message_type_name(f->type)));
      } else if (f->type == MessageType::kBaseData) {
        auto d = proto::decode_base_data(*f);
        if (!d) return d.status();
        ack = vol->base_data(d->offset, d->data);
      } else if (f->type == MessageType::kBaseZero) {
        auto z = proto::decode_base_zero(*f);
        if (!z) return z.status();
        ack = vol->base_zero(z->offset, z->length);
      } else if (f->type == MessageType::kRecords) {
        auto r = proto::decode_records(*f);
        if (!r) return r.status();
        ack = vol->append(*r);
      } else {
        return Status::invalid(fmt::format("the server sent {} while sending the volume",
                                           proto::message_type_name(f->type)));
      }
      if (!ack) return ack.status().with_context("the volume the server sent");
    }
  };
  Status st = body();
  if (!st) {
    vol.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return st;
}

}  // namespace rwd
