#include "rewind/ship/protocol.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include <fmt/format.h>

#include "codec.h"
#include "rewind/base/hash.h"
#include "rewind/format/seal.h"

namespace rwd::proto {

using namespace codec;

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
    case MessageType::kFetch:
      return "FETCH";
  }
  return "unknown";
}

std::vector<uint8_t> encode_frame(MessageType type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out(kHeaderSize + payload.size(), 0);
  std::memcpy(out.data(), kMagic, 4);
  out[4] = kFrameVersion;
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
  if (h[4] != kFrameVersion)
    return fail(fmt::format("frame version {}, expected {}", h[4], kFrameVersion));
  if (h[5] == 0 || h[5] > kMaxMessageType)
    return fail(fmt::format("unknown message type {}", h[5]));
  if (get_u16(h + 6) != 0 || get_u32(h + 12) != 0) return fail("reserved bytes are not zero");
  const uint32_t len = get_u32(h + 8);
  if (len > limit_)
    return fail(fmt::format("payload of {} bytes, over the limit of {}{}", len, limit_,
                            limit_ < kMaxPayload ? " before a HELLO is accepted" : ""),
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
  if (m.flags != 0) w.u8(m.flags);
  return w.take();
}

uint64_t stored_base_bytes(uint64_t image_size, uint8_t flags) {
  return (flags & kFlagSealedBase) ? sealed_base_size(image_size) : image_size;
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
  if (r.ok() && !r.at_end()) m.flags = r.u8();
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  if (m.version < kOldestVersion || m.version > kVersion)
    return malformed(f.type, fmt::format("version {}", m.version));
  if ((m.flags & ~kFlagSealedBase) != 0 || (m.flags != 0 && m.version < 2))
    return malformed(f.type, fmt::format("flags {:#x}", m.flags));
  if (purpose != 1 && purpose != 2) return malformed(f.type, fmt::format("purpose {}", purpose));
  m.purpose = static_cast<Purpose>(purpose);
  std::copy(id.begin(), id.end(), m.volume_id.begin());
  if (m.image_size > kMaxImageSize || m.base_bytes > stored_base_bytes(m.image_size, m.flags) ||
      m.durable_seq < m.base_seq)
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
  if (m.flags != 0) w.u8(m.flags);
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
  if (r.ok() && !r.at_end()) {
    m.flags = r.u8();
    if (m.flags == 0 || (m.flags & ~kFlagSealedBase) != 0)
      return malformed(f.type, fmt::format("flags {:#x}", m.flags));
  }
  REWIND_RETURN_IF_ERROR(finished(r, f.type));
  std::copy(id.begin(), id.end(), m.volume_id.begin());
  if (m.image_size == 0 || m.image_size % 512 != 0 || m.image_size > kMaxImageSize)
    return malformed(f.type, fmt::format("image size {} is not a positive multiple of 512 up to {}",
                                         m.image_size, kMaxImageSize));
  if (m.base_seq >= kMaxSeq)
    return malformed(f.type, fmt::format("base seq {} is not below {}", m.base_seq, kMaxSeq));
  if (m.base_time_ns >= kMaxTimeNs || m.created_ns >= kMaxTimeNs)
    return malformed(f.type, fmt::format("a time is not below {} ns", kMaxTimeNs));
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
  if (first >= kMaxSeq - count)
    return malformed(f.type, fmt::format("seq {} and the {} after it are not below {}", first,
                                         count - 1, kMaxSeq));
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
    if (h.time_ns >= kMaxTimeNs)
      return malformed(
          f.type, fmt::format("seq {} has time {} ns, not below {}", h.seq, h.time_ns, kMaxTimeNs));
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
      "?",    "MALFORMED", "VERSION", "UNAUTHORIZED", "READ_ONLY", "NO_VOLUME", "GAP",   "CONFLICT",
      "BUSY", "TIMEOUT",   "SERVER",  "TOO_LARGE",    "NO_POINT",  "QUOTA",     "SEALED"};
  const auto i = static_cast<size_t>(c);
  return i < std::size(names) ? names[i] : "?";
}

}  // namespace rwd::proto
