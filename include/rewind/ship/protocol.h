// The network protocol between the plugin's shipper (or `rewind` reading a volume
// over the network) and `rewind-server`: frames and the messages they carry.
//
// docs/PROTOCOL.md is the prose twin of this header: every frame, every message,
// the limits and what happens on each error. Pure functions and a byte-stream
// decoder, no I/O: the server and the shipper feed it what their sockets read.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/format/format.h"
#include "rewind/format/record.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/target.h"

namespace rwd::proto {

// ---- Frame --------------------------------------------------------------------
// offset size field
//      0    4 magic "RWNP"
//      4    1 version (kFrameVersion)
//      5    1 type (MessageType)
//      6    2 reserved, zero
//      8    4 payload_length (<= kMaxPayload)
//     12    4 reserved, zero
//     16    8 checksum: XXH3-64 of header bytes [0, 16) followed by the payload
inline constexpr char kMagic[4] = {'R', 'W', 'N', 'P'};
// The frame layout's version; the messages' (HELLO, WELCOME) is kVersion. Version 2
// added sealed copies: BASE_BEGIN's and WELCOME's flags, FETCH and the SEALED error. A
// peer of version 1 is still served; what needs version 2 is refused with a line
// saying so.
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr uint8_t kVersion = 2;
inline constexpr uint8_t kOldestVersion = 1;
inline constexpr size_t kHeaderSize = 24;
// The largest payload: a RECORDS frame holding one record of the largest WRITE.
inline constexpr uint32_t kMaxPayload =
    static_cast<uint32_t>(16 + format::record_span(format::kMaxPayload));
// Base snapshot data goes in chunks of at most this.
inline constexpr uint32_t kMaxBaseChunk = 4u << 20;
inline constexpr size_t kMaxVolumeName = 64;
inline constexpr size_t kMaxToken = 256;
// The largest seq, time (ns since the epoch, the year 2116) and image size a peer may
// send: far beyond any real volume, and far enough below 2^64 that no sum of them
// wraps around.
inline constexpr uint64_t kMaxSeq = uint64_t{1} << 62;
inline constexpr uint64_t kMaxTimeNs = uint64_t{1} << 62;
inline constexpr uint64_t kMaxImageSize = uint64_t{1} << 62;
// The largest payload a server reads before it has accepted a HELLO (which needs at
// most 3 + 1 + kMaxVolumeName + 2 + kMaxToken bytes).
inline constexpr uint32_t kMaxHelloPayload = 1024;
inline constexpr size_t kMaxErrorMessage = 1024;

enum class MessageType : uint8_t {
  kHello = 1,      // client -> server, first: versions, purpose, volume, token
  kWelcome = 2,    // server -> client: version chosen, what the server holds of the volume
  kError = 3,      // either way, last: a code and one line; the sender then closes
  kBaseBegin = 4,  // shipper -> server: the base snapshot's identity
  kBaseData = 5,   // shipper -> server: a chunk of the base snapshot
  kRecords = 6,    // shipper -> server: consecutive records, as in a segment
  kAck = 7,        // server -> shipper: what the server has made durable
  kPing = 8,       // either way: measures the round trip
  kPong = 9,       // the answer to a PING, echoing it
  kInfo = 10,      // reader -> server: asks for the volume's report (rewind info, log)
  kReport = 11,    // server -> reader: the report
  kRestore = 12,   // reader -> server: asks for the volume at a point in time
  kView = 13,      // server -> reader: the point the target resolved to; EXTENTs follow
  kExtent = 14,    // server -> reader: a run of the volume at that point, data or zeroes
  kEnd = 15,       // server -> reader: the last EXTENT was sent
  kBaseZero = 16,  // shipper -> server: a run of the base snapshot that reads as zeroes
  kFetch = 17,     // reader -> server: asks for the volume as stored (a sealed copy)
};
inline constexpr uint8_t kMaxMessageType = 17;

const char* message_type_name(MessageType t);

struct Frame {
  MessageType type = MessageType::kError;
  std::vector<uint8_t> payload;
};

// The bytes of one frame.
std::vector<uint8_t> encode_frame(MessageType type, std::span<const uint8_t> payload);

enum class ErrorCode : uint16_t {
  kMalformed = 1,     // a frame or message that is not this protocol
  kNoVersion = 2,     // no version both sides speak
  kUnauthorized = 3,  // unknown token, or the token does not grant this volume
  kReadOnly = 4,      // the token grants reading this volume only
  kNoVolume = 5,      // reading a volume the server does not have
  kGap = 6,           // records or base data that do not continue what the server holds
  kConflict = 7,      // another volume (id, size or base) under this name
  kBusy = 8,          // another shipper is connected for this volume
  kTimeout = 9,       // the peer stalled
  kServer = 10,       // the server failed (disk full, I/O error); try again later
  kTooLarge = 11,     // a frame over the limits
  kNoPoint = 12,      // a restore target outside what the volume holds
  kQuota = 13,        // the volume holds as much of the store as its token's quota allows
  kSealed = 14,       // the volume is sealed: the server cannot read it (FETCH it instead)
};
inline constexpr uint16_t kMaxErrorCode = 14;

// Cuts a byte stream into frames. feed() the bytes as they arrive; next() returns a
// whole frame when one is buffered. A frame's header is checked as soon as it is
// whole, so an oversized or malformed frame is refused before its payload is read.
// After an error the decoder stays failed: the connection is to be closed.
class FrameDecoder {
 public:
  void feed(std::span<const uint8_t> bytes);
  // True and *out set when a whole, valid frame was buffered; false when more bytes
  // are needed; an error (naming what was wrong and at which byte of the stream)
  // when the stream is not this protocol. After an error every call returns it.
  Result<bool> next(Frame* out);
  // What kind of error next() returned: kTooLarge for a frame announcing a payload
  // over kMaxPayload, kMalformed for anything else.
  ErrorCode failure() const { return failure_; }
  // Bytes buffered that are not yet a whole frame.
  size_t pending() const { return buf_.size() - start_; }
  // The largest payload a frame may announce (kMaxPayload unless lowered): a server
  // takes only a HELLO's worth from a peer it has not authenticated yet.
  void set_limit(uint32_t max_payload) { limit_ = max_payload; }

 private:
  uint32_t limit_ = kMaxPayload;
  std::vector<uint8_t> buf_;
  size_t start_ = 0;     // the first byte of the next frame in buf_
  uint64_t stream_ = 0;  // stream offset of buf_[start_]
  std::optional<Status> failed_;
  ErrorCode failure_ = ErrorCode::kMalformed;
};

// ---- Messages -----------------------------------------------------------------
enum class Purpose : uint8_t {
  kShip = 1,  // send a volume's journal (needs write access to it)
  kRead = 2,  // read a volume (restore, info, log)
};

struct Hello {
  uint8_t min_version = kVersion, max_version = kVersion;
  Purpose purpose = Purpose::kShip;
  std::string volume;  // 1..kMaxVolumeName of [A-Za-z0-9._-], not starting with '.'
  std::string token;   // 1..kMaxToken printable ASCII bytes, no spaces
  bool operator==(const Hello&) const = default;
};

// BASE_BEGIN's and WELCOME's flags (version 2; sent only when not zero).
inline constexpr uint8_t kFlagSealedBase = 0x01;  // the base snapshot is sealed (seal.h)

struct Welcome {
  uint8_t version = kVersion;
  Purpose purpose = Purpose::kShip;
  // What the server holds of the volume (all zero if nothing yet).
  std::array<uint8_t, format::kVolumeIdSize> volume_id{};
  uint64_t image_size = 0;
  uint64_t base_seq = 0;
  uint64_t base_bytes = 0;   // bytes of the base snapshot held durably, in order
  uint64_t durable_seq = 0;  // the last record held durably (base_seq if none)
  uint8_t flags = 0;         // kFlagSealedBase
  bool operator==(const Welcome&) const = default;
};

// The name of an error code, as the protocol spec gives it ("GAP").
const char* error_code_name(ErrorCode c);

struct Error {
  ErrorCode code = ErrorCode::kMalformed;
  std::string message;  // one line, at most kMaxErrorMessage bytes
  bool operator==(const Error&) const = default;
};

struct BaseBegin {
  std::array<uint8_t, format::kVolumeIdSize> volume_id{};
  uint64_t image_size = 0;
  uint64_t base_seq = 0;
  uint64_t base_time_ns = 0;
  uint64_t created_ns = 0;
  uint8_t flags = 0;  // kFlagSealedBase: the base is sent sealed (sealed_base_size bytes)
  bool operator==(const BaseBegin&) const = default;
};

// The bytes of the base snapshot as sent and stored: the volume's size, or the size of
// its sealed form.
uint64_t stored_base_bytes(uint64_t image_size, uint8_t flags);

struct BaseData {
  uint64_t offset = 0;
  std::vector<uint8_t> data;  // 1..kMaxBaseChunk bytes
  bool operator==(const BaseData&) const = default;
};

// Consecutive records, each encoded exactly as in a segment (header, payload,
// padding to 8 bytes); decoding checks every header and payload checksum and that
// seqs run on without a gap and times never go back.
// A run of the base snapshot that reads as zeroes (a hole, or zeroes written): sent as
// its length only.
struct BaseZero {
  uint64_t offset = 0;
  uint64_t length = 0;  // >= 1
  bool operator==(const BaseZero&) const = default;
};

struct Records {
  std::vector<RecordHeader> headers;
  std::vector<std::span<const uint8_t>> payloads;  // into the decoded frame's payload
};

struct Ack {
  uint64_t durable_seq = 0;
  uint64_t base_bytes = 0;
  bool operator==(const Ack&) const = default;
};

struct Ping {
  uint64_t nonce = 0;
  uint64_t sent_ns = 0;
  bool operator==(const Ping&) const = default;
};

struct InfoRequest {
  bool scan = false;  // count records by type (rewind log), not only the manifest's figures
  bool operator==(const InfoRequest&) const = default;
};

// What `rewind info` and `rewind log` show of a journal (inspect.h's JournalReport),
// with the manifest as its text.
struct Report {
  JournalReport report;
};

struct RestoreRequest {
  Target target;  // a time is absolute here: the reader resolves relative times
};

struct ViewInfo {
  uint64_t seq = 0, time_ns = 0, image_size = 0;
  uint64_t extents = 0, journal_bytes = 0;  // the extent map over the base snapshot
  std::string note;                         // how the target resolved, if worth saying
  bool operator==(const ViewInfo&) const = default;
};

// A run of the volume at offset: `length` zero bytes, or `data` (1..kMaxExtentData).
struct Extent {
  uint64_t offset = 0;
  bool zero = false;
  uint64_t length = 0;
  std::vector<uint8_t> data;
  bool operator==(const Extent&) const = default;
};
inline constexpr uint32_t kMaxExtentData = 4u << 20;

struct End {
  uint64_t data_bytes = 0, zero_bytes = 0;
  bool operator==(const End&) const = default;
};

// Checks a volume name: 1..kMaxVolumeName bytes of [A-Za-z0-9._-], not starting
// with '.' (so it is a safe directory name).
Status check_volume_name(std::string_view name);
// Checks a token: 1..kMaxToken printable ASCII bytes without spaces.
Status check_token(std::string_view token);

std::vector<uint8_t> encode(const Hello& m);
std::vector<uint8_t> encode(const Welcome& m);
std::vector<uint8_t> encode(const Error& m);
std::vector<uint8_t> encode(const BaseBegin& m);
std::vector<uint8_t> encode(const BaseData& m);
std::vector<uint8_t> encode(const BaseZero& m);
std::vector<uint8_t> encode(const Ack& m);
std::vector<uint8_t> encode(const Ping& m);  // a PING's payload, or its PONG's
std::vector<uint8_t> encode(const InfoRequest& m);
std::vector<uint8_t> encode(const Report& m);
std::vector<uint8_t> encode(const RestoreRequest& m);
std::vector<uint8_t> encode(const ViewInfo& m);
std::vector<uint8_t> encode(const Extent& m);
std::vector<uint8_t> encode(const End& m);
// A RECORDS frame's payload: u64 first seq, u32 count, u32 zero, then the records.
// The headers must be valid and their payload checksums set.
std::vector<uint8_t> encode_records(std::span<const RecordHeader> headers,
                                    std::span<const std::span<const uint8_t>> payloads);

// Each checks the frame's type and decodes its payload, or says what is wrong with it.
Result<Hello> decode_hello(const Frame& f);
Result<Welcome> decode_welcome(const Frame& f);
Result<Error> decode_error(const Frame& f);
Result<BaseBegin> decode_base_begin(const Frame& f);
Result<BaseData> decode_base_data(const Frame& f);
Result<BaseZero> decode_base_zero(const Frame& f);
Result<Records> decode_records(const Frame& f);
Result<Ack> decode_ack(const Frame& f);
Result<Ping> decode_ping(const Frame& f);  // a PING or a PONG
Result<InfoRequest> decode_info(const Frame& f);
Result<Report> decode_report(const Frame& f);
Result<RestoreRequest> decode_restore(const Frame& f);
Result<ViewInfo> decode_view(const Frame& f);
Result<Extent> decode_extent(const Frame& f);
Result<End> decode_end(const Frame& f);

}  // namespace rwd::proto
