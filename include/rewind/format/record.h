// Record codec: encodes and decodes the 56-byte record header of format.h and
// computes checksums. Pure functions, no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/format/format.h"

namespace rwd {

struct RecordHeader {
  format::RecordType type = format::RecordType::kNone;
  uint8_t flags = 0;
  uint32_t payload_length = 0;
  uint64_t seq = 0;
  uint64_t time_ns = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t payload_checksum = 0;
  // How the payload is stored (a WRITE only); payload_length and payload_checksum are
  // those of the stored bytes, `length` that of the decoded ones.
  format::Codec codec = format::Codec::kNone;
  // Whether the payload is sealed (seal.h); payload_length and payload_checksum then
  // cover the seal's trailer too.
  format::Seal seal = format::Seal::kNone;

  bool operator==(const RecordHeader&) const = default;
};

using EncodedHeader = std::array<uint8_t, format::kRecordHeaderSize>;

uint64_t payload_checksum(std::span<const uint8_t> payload);

// Fills `out` with the header and its checksum. The header must be valid (see
// validate_header); the payload checksum must already be set.
void encode_header(const RecordHeader& h, uint8_t* out);
inline EncodedHeader encode_header(const RecordHeader& h) {
  EncodedHeader out;
  encode_header(h, out.data());
  return out;
}

// Decodes a header and checks its checksum and field constraints. Fails with a
// corruption status (message without position: the caller knows where it read).
Status decode_header(const uint8_t* in, RecordHeader* out);

// True if all kRecordHeaderSize bytes are zero (the unwritten, pre-allocated tail).
bool is_zero_header(const uint8_t* in);

// Field constraints: type known, flags known, codec and seal known, the codec allowed
// for the type, payload length agrees with the type, codec and seal.
Status validate_header(const RecordHeader& h);

const char* record_type_name(format::RecordType t);

// A MARK's payload: its name, and for a group mark (one cut across several volumes,
// `rewind mark --with`) a second line "group=ID volumes=VOLUME,VOLUME,...": the
// group's id and the volume ids of its members, this one among them.
struct MarkPayload {
  std::string name;
  std::string group;  // empty: a plain mark
  std::vector<std::string> volumes;
  bool operator==(const MarkPayload&) const = default;
};
// A MARK's payload from its stored payload of h.payload_length bytes: all of it, or for
// a sealed mark the body before the seal's trailer (a mark is never encrypted).
MarkPayload mark_payload_of(const RecordHeader& h, const uint8_t* stored);
std::string mark_name_of(const RecordHeader& h, const uint8_t* stored);
std::string encode_mark_payload(const MarkPayload& p);

// Mark names: 1..255 bytes, no whitespace or control characters.
Status check_mark_name(std::string_view name);

// Little-endian helpers shared by the codecs.
inline void put_u16(uint8_t* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t get_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace rwd
