#include "rewind/ship/protocol.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include <fmt/format.h>

#include "rewind/base/hash.h"

namespace rwd::proto {

namespace {

uint64_t frame_checksum(const uint8_t* header, std::span<const uint8_t> payload) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, header, 16);
  if (!payload.empty()) XXH3_64bits_update(st, payload.data(), payload.size());
  const uint64_t sum = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return sum;
}

// Appends little-endian fields to a message payload.
class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str8(std::string_view s) {
    u8(static_cast<uint8_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void str16(std::string_view s) {
    u16(static_cast<uint16_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

// Reads little-endian fields from a message payload; ok() turns false at the first
// field that runs past its end.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  uint8_t u8() { return static_cast<uint8_t>(get(1)); }
  uint16_t u16() { return static_cast<uint16_t>(get(2)); }
  uint32_t u32() { return static_cast<uint32_t>(get(4)); }
  uint64_t u64() { return get(8); }
  std::span<const uint8_t> bytes(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string str8() { return str(u8()); }
  std::string str16() { return str(u16()); }
  bool ok() const { return ok_; }
  bool at_end() const { return ok_ && pos_ == in_.size(); }
  size_t pos() const { return pos_; }

 private:
  uint64_t get(size_t n) {
    auto b = bytes(n);
    uint64_t v = 0;
    for (size_t i = b.size(); i-- > 0;) v = (v << 8) | b[i];
    return v;
  }
  std::string str(size_t n) {
    auto b = bytes(n);
    return std::string(b.begin(), b.end());
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

Status malformed(MessageType t, const std::string& why) {
  return Status::invalid(fmt::format("malformed {} message: {}", message_type_name(t), why));
}

// Text a peer sent, made one line for a log: control characters become '?'.
void make_one_line(std::string* text) {
  for (char& c : *text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
}

Status expect_type(const Frame& f, MessageType want) {
  if (f.type == want) return Status::ok();
  if (want == MessageType::kPing && f.type == MessageType::kPong) return Status::ok();
  return Status::invalid(fmt::format("expected a {} message, got {}", message_type_name(want),
                                     message_type_name(f.type)));
}

// The whole payload was read, and nothing more is there.
Status finished(const Reader& r, MessageType t) {
  if (!r.ok()) return malformed(t, "it ends early");
  if (!r.at_end()) return malformed(t, "bytes follow its last field");
  return Status::ok();
}

}  // namespace

const char* message_type_name(MessageType t) {
  switch (t) {
    case MessageType::kHello:
      return "HELLO";
    case MessageType::kWelcome:
      return "WELCOME";
    case MessageType::kError:
      return "ERROR";
    case MessageType::kBaseBegin:
      return "BASE_BEGIN";
    case MessageType::kBaseData:
      return "BASE_DATA";
    case MessageType::kRecords:
      return "RECORDS";
    case MessageType::kAck:
      return "ACK";
    case MessageType::kPing:
      return "PING";
    case MessageType::kPong:
      return "PONG";
    case MessageType::kInfo:
      return "INFO";
    case MessageType::kReport:
      return "REPORT";
    case MessageType::kRestore:
      return "RESTORE";
    case MessageType::kView:
      return "VIEW";
    case MessageType::kExtent:
      return "EXTENT";
    case MessageType::kEnd:
      return "END";
    case MessageType::kBaseZero:
      return "BASE_ZERO";
  }
  return "unknown";
}

std::vector<uint8_t> encode_frame(MessageType type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out(kHeaderSize + payload.size(), 0);
  std::memcpy(out.data(), kMagic, 4);
  out[4] = kVersion;
  out[5] = static_cast<uint8_t>(type);
  put_u32(out.data() + 8, static_cast<uint32_t>(payload.size()));
  put_u64(out.data() + 16, frame_checksum(out.data(), payload));
  if (!payload.empty()) std::memcpy(out.data() + kHeaderSize, payload.data(), payload.size());
  return out;
}

void FrameDecoder::feed(std::span<const uint8_t> bytes) {
  if (failed_) return;
  // Drop what earlier frames used before the buffer grows.
  if (start_ > 0 && start_ == buf_.size()) {
    buf_.clear();
    start_ = 0;
  } else if (start_ > (1u << 20) && start_ * 2 > buf_.size()) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(start_));
    start_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

Result<bool> FrameDecoder::next(Frame* out) {
  if (failed_) return *failed_;
  auto fail = [&](const std::string& why, ErrorCode kind = ErrorCode::kMalformed) -> Result<bool> {
    failed_ = Status::invalid(fmt::format("frame at byte {} of the stream: {}", stream_, why));
    failure_ = kind;
    return *failed_;
  };
  if (pending() < kHeaderSize) return false;
  const uint8_t* h = buf_.data() + start_;
  if (std::memcmp(h, kMagic, 4) != 0) return fail("bad magic (not a rewind protocol peer?)");
  if (h[4] != kVersion) return fail(fmt::format("frame version {}, expected {}", h[4], kVersion));
  if (h[5] == 0 || h[5] > kMaxMessageType)
    return fail(fmt::format("unknown message type {}", h[5]));
  if (get_u16(h + 6) != 0 || get_u32(h + 12) != 0) return fail("reserved bytes are not zero");
  const uint32_t len = get_u32(h + 8);
  if (len > kMaxPayload)
    return fail(fmt::format("payload of {} bytes, over the limit of {}", len, kMaxPayload),
                ErrorCode::kTooLarge);
  if (pending() < kHeaderSize + len) return false;
  std::span<const uint8_t> payload(h + kHeaderSize, len);
  if (frame_checksum(h, payload) != get_u64(h + 16)) return fail("checksum mismatch");
  out->type = static_cast<MessageType>(h[5]);
  out->payload.assign(payload.begin(), payload.end());
  start_ += kHeaderSize + len;
  stream_ += kHeaderSize + len;
  return true;
}

Status check_token(std::string_view token) {
  if (token.empty() || token.size() > kMaxToken)
    return Status::invalid(fmt::format("a token is 1 to {} bytes", kMaxToken));
  for (char c : token)
    if (c <= 0x20 || c >= 0x7f) return Status::invalid("a token is printable ASCII without spaces");
  return Status::ok();
}

Status check_volume_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxVolumeName || name[0] == '.')
    return Status::invalid(fmt::format(
        "volume name '{}' must be 1 to {} bytes and not start with '.'", name, kMaxVolumeName));
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return Status::invalid(
          fmt::format("volume name '{}' may hold only letters, digits, '.', '_' and '-'", name));
  return Status::ok();
}

std::vector<uint8_t> encode(const Hello& m) {
  Writer w;
  w.u8(m.min_version);
  w.u8(m.max_version);
  w.u8(static_cast<uint8_t>(m.purpose));
  w.str8(m.volume);
  w.str16(m.token);
  return w.take();
}

Result<Hello> decode_hello(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kHello));
  Reader r(f.payload);
  Hello m;
  m.min_version = r.u8();
  m.max_version = r.u8();
  const uint8_t purpose = r.u8();
  m.volume = r.str8();
  m.token = r.str16();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (m.min_version == 0 || m.min_version > m.max_version)
    return malformed(f.type, fmt::format("versions {}..{}", m.min_version, m.max_version));
  if (purpose != 1 && purpose != 2) return malformed(f.type, fmt::format("purpose {}", purpose));
  m.purpose = static_cast<Purpose>(purpose);
  if (Status st = check_volume_name(m.volume); !st) return malformed(f.type, st.message());
  if (Status st = check_token(m.token); !st) return malformed(f.type, st.message());
  return m;
}

std::vector<uint8_t> encode(const Welcome& m) {
  Writer w;
  w.u8(m.version);
  w.u8(static_cast<uint8_t>(m.purpose));
  w.bytes(m.volume_id);
  w.u64(m.image_size);
  w.u64(m.base_seq);
  w.u64(m.base_bytes);
  w.u64(m.durable_seq);
  return w.take();
}

Result<Welcome> decode_welcome(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kWelcome));
  Reader r(f.payload);
  Welcome m;
  m.version = r.u8();
  const uint8_t purpose = r.u8();
  auto id = r.bytes(format::kVolumeIdSize);
  m.image_size = r.u64();
  m.base_seq = r.u64();
  m.base_bytes = r.u64();
  m.durable_seq = r.u64();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (m.version != kVersion) return malformed(f.type, fmt::format("version {}", m.version));
  if (purpose != 1 && purpose != 2) return malformed(f.type, fmt::format("purpose {}", purpose));
  m.purpose = static_cast<Purpose>(purpose);
  std::copy(id.begin(), id.end(), m.volume_id.begin());
  if (m.base_bytes > m.image_size || m.durable_seq < m.base_seq)
    return malformed(f.type, fmt::format("base bytes {} of {}, durable seq {} before base seq {}",
                                         m.base_bytes, m.image_size, m.durable_seq, m.base_seq));
  return m;
}

std::vector<uint8_t> encode(const Error& m) {
  Writer w;
  w.u16(static_cast<uint16_t>(m.code));
  w.str16(m.message.substr(0, kMaxErrorMessage));
  return w.take();
}

Result<Error> decode_error(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kError));
  Reader r(f.payload);
  Error m;
  const uint16_t code = r.u16();
  m.message = r.str16();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (code == 0 || code > kMaxErrorCode) return malformed(f.type, fmt::format("code {}", code));
  if (m.message.size() > kMaxErrorMessage)
    return malformed(f.type, fmt::format("a message of {} bytes", m.message.size()));
  make_one_line(&m.message);
  m.code = static_cast<ErrorCode>(code);
  return m;
}

std::vector<uint8_t> encode(const BaseBegin& m) {
  Writer w;
  w.bytes(m.volume_id);
  w.u64(m.image_size);
  w.u64(m.base_seq);
  w.u64(m.base_time_ns);
  w.u64(m.created_ns);
  return w.take();
}

Result<BaseBegin> decode_base_begin(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kBaseBegin));
  Reader r(f.payload);
  BaseBegin m;
  auto id = r.bytes(format::kVolumeIdSize);
  m.image_size = r.u64();
  m.base_seq = r.u64();
  m.base_time_ns = r.u64();
  m.created_ns = r.u64();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  std::copy(id.begin(), id.end(), m.volume_id.begin());
  if (m.image_size == 0 || m.image_size % 512 != 0)
    return malformed(f.type,
                     fmt::format("image size {} is not a positive multiple of 512", m.image_size));
  return m;
}

std::vector<uint8_t> encode(const BaseData& m) {
  Writer w;
  w.u64(m.offset);
  w.bytes(m.data);
  return w.take();
}

Result<BaseData> decode_base_data(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kBaseData));
  Reader r(f.payload);
  BaseData m;
  m.offset = r.u64();
  if (!r.ok()) return malformed(f.type, "it ends early");
  auto data = r.bytes(f.payload.size() - r.pos());
  if (data.empty() || data.size() > kMaxBaseChunk)
    return malformed(f.type,
                     fmt::format("a chunk of {} bytes (1 to {})", data.size(), kMaxBaseChunk));
  if (m.offset + data.size() < m.offset) return malformed(f.type, "the chunk's range overflows");
  m.data.assign(data.begin(), data.end());
  return m;
}

std::vector<uint8_t> encode(const BaseZero& m) {
  Writer w;
  w.u64(m.offset);
  w.u64(m.length);
  return w.take();
}

Result<BaseZero> decode_base_zero(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kBaseZero));
  Reader r(f.payload);
  BaseZero m;
  m.offset = r.u64();
  m.length = r.u64();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (m.length == 0) return malformed(f.type, "an empty run");
  if (m.offset + m.length < m.offset) return malformed(f.type, "the run's range overflows");
  return m;
}

std::vector<uint8_t> encode_records(std::span<const RecordHeader> headers,
                                    std::span<const std::span<const uint8_t>> payloads) {
  Writer w;
  w.u64(headers.empty() ? 0 : headers[0].seq);
  w.u32(static_cast<uint32_t>(headers.size()));
  w.u32(0);
  std::vector<uint8_t> out = w.take();
  for (size_t i = 0; i < headers.size(); ++i) {
    const size_t at = out.size();
    out.resize(at + format::record_span(headers[i].payload_length), 0);
    encode_header(headers[i], out.data() + at);
    if (!payloads[i].empty())
      std::memcpy(out.data() + at + format::kRecordHeaderSize, payloads[i].data(),
                  payloads[i].size());
  }
  return out;
}

Result<Records> decode_records(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kRecords));
  Reader r(f.payload);
  const uint64_t first = r.u64();
  const uint32_t count = r.u32();
  const uint32_t zero = r.u32();
  if (!r.ok()) return malformed(f.type, "it ends early");
  if (zero != 0) return malformed(f.type, "reserved bytes are not zero");
  if (count == 0) return malformed(f.type, "no records");
  // Each record takes at least a header: a count the payload cannot hold is refused
  // before anything is allocated for it.
  if (count > (f.payload.size() - r.pos()) / format::kRecordHeaderSize)
    return malformed(f.type, fmt::format("{} records in {} bytes", count, f.payload.size()));
  Records m;
  m.headers.reserve(count);
  m.payloads.reserve(count);
  uint64_t last_time = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t at = r.pos();
    auto hb = r.bytes(format::kRecordHeaderSize);
    if (!r.ok()) return malformed(f.type, fmt::format("record {} of {} is cut short", i, count));
    RecordHeader h;
    if (Status st = decode_header(hb.data(), &h); !st)
      return malformed(f.type, fmt::format("record {} at byte {}: {}", i, at, st.message()));
    if (h.seq != first + i)
      return malformed(f.type,
                       fmt::format("record {} has seq {}, expected {}", i, h.seq, first + i));
    if (h.time_ns < last_time)
      return malformed(f.type, fmt::format("seq {} goes back in time", h.seq));
    last_time = h.time_ns;
    const uint64_t span = format::record_span(h.payload_length) - format::kRecordHeaderSize;
    auto body = r.bytes(span);
    if (!r.ok()) return malformed(f.type, fmt::format("seq {} is cut short", h.seq));
    auto payload = body.first(h.payload_length);
    if (payload_checksum(payload) != h.payload_checksum)
      return malformed(f.type, fmt::format("seq {}: payload checksum mismatch", h.seq));
    if (std::any_of(body.begin() + h.payload_length, body.end(), [](uint8_t b) { return b; }))
      return malformed(f.type, fmt::format("seq {}: padding is not zero", h.seq));
    m.headers.push_back(h);
    m.payloads.push_back(payload);
  }
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  return m;
}

std::vector<uint8_t> encode(const Ack& m) {
  Writer w;
  w.u64(m.durable_seq);
  w.u64(m.base_bytes);
  return w.take();
}

Result<Ack> decode_ack(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kAck));
  Reader r(f.payload);
  Ack m;
  m.durable_seq = r.u64();
  m.base_bytes = r.u64();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  return m;
}

std::vector<uint8_t> encode(const Ping& m) {
  Writer w;
  w.u64(m.nonce);
  w.u64(m.sent_ns);
  return w.take();
}

Result<Ping> decode_ping(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kPing));
  Reader r(f.payload);
  Ping m;
  m.nonce = r.u64();
  m.sent_ns = r.u64();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  return m;
}

const char* error_code_name(ErrorCode c) {
  static const char* const names[] = {
      "?",        "MALFORMED", "VERSION", "UNAUTHORIZED", "READ_ONLY", "NO_VOLUME", "GAP",
      "CONFLICT", "BUSY",      "TIMEOUT", "SERVER",       "TOO_LARGE", "NO_POINT"};
  const auto i = static_cast<size_t>(c);
  return i < std::size(names) ? names[i] : "?";
}

std::vector<uint8_t> encode(const InfoRequest& m) {
  Writer w;
  w.u8(m.scan ? 1 : 0);
  return w.take();
}

Result<InfoRequest> decode_info(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kInfo));
  Reader r(f.payload);
  const uint8_t scan = r.u8();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (scan > 1) return malformed(f.type, fmt::format("scan {}", scan));
  return InfoRequest{scan == 1};
}

namespace {
// The counts of a SegmentReport, in their order on the wire.
constexpr size_t kSegmentCounts = 17;
std::array<uint64_t*, kSegmentCounts> segment_counts(SegmentReport& s) {
  return {&s.first_seq,    &s.last_seq,     &s.records,   &s.bytes,          &s.first_time_ns,
          &s.last_time_ns, &s.writes,       &s.zeroes,    &s.trims,          &s.marks,
          &s.flush_points, &s.coalesced,    &s.compacted, &s.granularity_ns, &s.bytes_written,
          &s.bytes_zeroed, &s.bytes_trimmed};
}
// The least a segment takes on the wire: file name length, flags, counts, torn length.
constexpr size_t kMinSegmentBytes = 2 + 1 + kSegmentCounts * 8 + 2;
}  // namespace

std::vector<uint8_t> encode(const Report& m) {
  const JournalReport& j = m.report;
  Writer w;
  const std::string manifest = j.manifest.serialize();
  w.u32(static_cast<uint32_t>(manifest.size()));
  w.bytes(std::span(reinterpret_cast<const uint8_t*>(manifest.data()), manifest.size()));
  w.u8(j.in_use ? 1 : 0);
  w.u64(j.base_bytes);
  w.u64(j.base_allocated);
  w.u32(static_cast<uint32_t>(j.segments.size()));
  for (SegmentReport s : j.segments) {
    w.str16(s.file);
    w.u8(static_cast<uint8_t>((s.sealed ? 1 : 0) | (s.scanned ? 2 : 0) | (s.torn_tail ? 4 : 0)));
    auto counts = segment_counts(s);
    for (uint64_t* c : counts) w.u64(*c);
    w.str16(s.torn_tail.value_or(""));
  }
  w.u32(static_cast<uint32_t>(j.marks.size()));
  for (const MarkReport& mk : j.marks) {
    w.str8(mk.name);
    w.u64(mk.seq);
    w.u64(mk.time_ns);
  }
  return w.take();
}

Result<Report> decode_report(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kReport));
  Reader r(f.payload);
  Report m;
  JournalReport& j = m.report;
  const uint32_t mlen = r.u32();
  auto mtext = r.bytes(mlen);
  if (!r.ok()) return malformed(f.type, "it ends early");
  auto manifest =
      Manifest::parse(std::string_view(reinterpret_cast<const char*>(mtext.data()), mtext.size()),
                      "the server's manifest");
  if (!manifest) return malformed(f.type, manifest.status().message());
  j.manifest = std::move(*manifest);
  j.in_use = r.u8() != 0;
  j.base_bytes = r.u64();
  j.base_allocated = r.u64();
  const uint32_t nseg = r.u32();
  if (!r.ok() || nseg > (f.payload.size() - r.pos()) / kMinSegmentBytes)
    return malformed(f.type, fmt::format("{} segments in {} bytes", nseg, f.payload.size()));
  for (uint32_t i = 0; i < nseg; ++i) {
    SegmentReport s;
    s.file = r.str16();
    const uint8_t flags = r.u8();
    s.sealed = flags & 1;
    s.scanned = flags & 2;
    auto counts = segment_counts(s);
    for (uint64_t* c : counts) *c = r.u64();
    std::string torn = r.str16();
    if (flags & 4) s.torn_tail = std::move(torn);
    if (!r.ok()) return malformed(f.type, fmt::format("segment {} is cut short", i));
    j.segments.push_back(std::move(s));
  }
  const uint32_t nmarks = r.u32();
  if (!r.ok() || nmarks > (f.payload.size() - r.pos()) / 17)
    return malformed(f.type, fmt::format("{} marks in {} bytes", nmarks, f.payload.size()));
  for (uint32_t i = 0; i < nmarks; ++i) {
    MarkReport mk;
    mk.name = r.str8();
    mk.seq = r.u64();
    mk.time_ns = r.u64();
    if (!r.ok()) return malformed(f.type, fmt::format("mark {} is cut short", i));
    j.marks.push_back(std::move(mk));
  }
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  return m;
}

std::vector<uint8_t> encode(const RestoreRequest& m) {
  Writer w;
  w.u8(static_cast<uint8_t>(m.target.kind));
  w.u64(m.target.seq);
  w.u64(m.target.time_ns);
  w.str8(m.target.mark);
  w.str16(m.target.text.substr(0, 1024));
  return w.take();
}

Result<RestoreRequest> decode_restore(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kRestore));
  Reader r(f.payload);
  RestoreRequest m;
  const uint8_t kind = r.u8();
  m.target.seq = r.u64();
  m.target.time_ns = r.u64();
  m.target.mark = r.str8();
  m.target.text = r.str16();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (kind > static_cast<uint8_t>(Target::Kind::kMark))
    return malformed(f.type, fmt::format("target kind {}", kind));
  m.target.kind = static_cast<Target::Kind>(kind);
  if (m.target.kind == Target::Kind::kMark) {
    if (Status st = check_mark_name(m.target.mark); !st) return malformed(f.type, st.message());
  }
  make_one_line(&m.target.text);
  return m;
}

std::vector<uint8_t> encode(const ViewInfo& m) {
  Writer w;
  w.u64(m.seq);
  w.u64(m.time_ns);
  w.u64(m.image_size);
  w.u64(m.extents);
  w.u64(m.journal_bytes);
  w.str16(m.note.substr(0, kMaxErrorMessage));
  return w.take();
}

Result<ViewInfo> decode_view(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kView));
  Reader r(f.payload);
  ViewInfo m;
  m.seq = r.u64();
  m.time_ns = r.u64();
  m.image_size = r.u64();
  m.extents = r.u64();
  m.journal_bytes = r.u64();
  m.note = r.str16();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (m.image_size == 0 || m.image_size % 512 != 0)
    return malformed(f.type,
                     fmt::format("image size {} is not a positive multiple of 512", m.image_size));
  make_one_line(&m.note);
  return m;
}

std::vector<uint8_t> encode(const Extent& m) {
  Writer w;
  w.u64(m.offset);
  w.u8(m.zero ? 1 : 0);
  if (m.zero)
    w.u64(m.length);
  else
    w.bytes(m.data);
  return w.take();
}

Result<Extent> decode_extent(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kExtent));
  Reader r(f.payload);
  Extent m;
  m.offset = r.u64();
  const uint8_t zero = r.u8();
  if (!r.ok()) return malformed(f.type, "it ends early");
  if (zero > 1) return malformed(f.type, fmt::format("kind {}", zero));
  m.zero = zero == 1;
  if (m.zero) {
    m.length = r.u64();
    REWIND_RETURN_IF_ERROR(finished(r, f.type));
    if (m.length == 0) return malformed(f.type, "an empty run");
  } else {
    auto data = r.bytes(f.payload.size() - r.pos());
    if (data.empty() || data.size() > kMaxExtentData)
      return malformed(f.type,
                       fmt::format("{} bytes of data (1 to {})", data.size(), kMaxExtentData));
    m.data.assign(data.begin(), data.end());
    m.length = m.data.size();
  }
  if (m.offset + m.length < m.offset) return malformed(f.type, "the run's range overflows");
  return m;
}

std::vector<uint8_t> encode(const End& m) {
  Writer w;
  w.u64(m.data_bytes);
  w.u64(m.zero_bytes);
  return w.take();
}

Result<End> decode_end(const Frame& f) {
  REWIND_RETURN_IF_ERROR(expect_type(f, MessageType::kEnd));
  Reader r(f.payload);
  End m;
  m.data_bytes = r.u64();
  m.zero_bytes = r.u64();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  return m;
}

}  // namespace rwd::proto
