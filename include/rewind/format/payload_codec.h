// Payload codecs (format::Codec): how a WRITE's bytes are stored in a record. Pure
// functions over memory, no I/O.
//
// A payload stored with kZstd is the WRITE's bytes cut into frames of
// format::kCodecFrameSize, each compressed on its own, behind a table of the frames'
// stored sizes (format.h). The record's payload_checksum covers the stored bytes, as
// for every record, so damage is found before anything is decompressed; the segment
// index's chunk checksums cover the decoded bytes, so a read of part of a record can
// decode and check only the frames it needs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/format/format.h"
#include "rewind/format/record.h"

namespace rwd {

// What the plugin's compress= key says: off, or zstd at a level.
struct Compression {
  format::Codec codec = format::Codec::kNone;
  int level = 0;
  bool operator==(const Compression&) const = default;
};
inline constexpr int kDefaultZstdLevel = 1;

// Parses "off", "zstd" or "zstd:LEVEL" (1..19); the error says what is accepted (the
// caller names the key).
Result<Compression> parse_compression(const std::string& text);
std::string compression_name(const Compression& c);

// Whether a record is one a codec may store compressed: a WRITE, not superseded, of at
// least 512 bytes (shorter ones gain too little for the CPU), stored as is so far and
// not sealed. The journal, the shipper and compaction all go by this.
inline bool worth_encoding(const RecordHeader& h) {
  return h.type == format::RecordType::kWrite && !(h.flags & format::kFlagSuperseded) &&
         h.length >= 512 && h.codec == format::Codec::kNone && h.seal == format::Seal::kNone;
}

// Reuses a compression context across records (one per thread).
class PayloadEncoder {
 public:
  explicit PayloadEncoder(Compression c);
  ~PayloadEncoder();
  PayloadEncoder(const PayloadEncoder&) = delete;
  PayloadEncoder& operator=(const PayloadEncoder&) = delete;

  const Compression& compression() const { return c_; }

  // Encodes `data` (a WRITE's bytes) into *out (cleared first) and returns true, or
  // returns false when the codec would not save at least 1/16 of the bytes: the
  // record is then stored as is. It gives up after the first frame that does not
  // shrink, so incompressible data costs the compression of one frame per record.
  bool encode(std::span<const uint8_t> data, std::vector<uint8_t>* out);

 private:
  bool try_encode(std::span<const uint8_t> data, std::vector<uint8_t>* out);
  Compression c_;
  void* cctx_ = nullptr;  // ZSTD_CCtx
};

// The frames of a stored payload that hold decoded bytes [at, at+n): their index
// range, the decoded offset of the first, and where their stored bytes begin.
struct FrameSpan {
  uint32_t first = 0, last = 0;  // frames first..last
  uint64_t decoded_begin = 0;    // decoded offset of frame `first`
  uint64_t decoded_end = 0;      // decoded offset just past frame `last`
};
FrameSpan frames_of(uint64_t decoded_length, uint64_t at, uint64_t n);

// Bytes of a kZstd payload's frame table, for a WRITE of `decoded_length` bytes.
uint64_t frame_table_size(uint64_t decoded_length);

// Where the stored bytes of `span`'s frames lie in a kZstd payload of `stored_length`
// bytes whose table is `table` (frame_table_size() bytes): [first, second). Fails if
// the table's sizes do not add up to the payload.
Result<std::pair<uint64_t, uint64_t>> frame_bytes(std::span<const uint8_t> table,
                                                  uint64_t decoded_length, uint64_t stored_length,
                                                  const FrameSpan& span);

// Decodes `span`'s frames, whose stored bytes are `bytes` (as frame_bytes() placed
// them), into `out` (span.decoded_end - span.decoded_begin bytes). Fails with a
// corruption status (no position: the caller knows it) if a frame is damaged.
Status decode_frame_bytes(std::span<const uint8_t> table, std::span<const uint8_t> bytes,
                          uint64_t decoded_length, const FrameSpan& span, std::span<uint8_t> out);

// Both of the above over a whole stored payload (whose checksum may not have been
// checked).
Status decode_frames(std::span<const uint8_t> stored, uint64_t decoded_length,
                     const FrameSpan& span, std::span<uint8_t> out);

// Decodes a whole stored payload into `out` (decoded_length bytes).
Status decode_payload(format::Codec codec, std::span<const uint8_t> stored, std::span<uint8_t> out);

// The largest stored payload a codec may give for `decoded_length` bytes.
uint64_t max_stored_length(format::Codec codec, uint64_t decoded_length);

}  // namespace rwd
