// The on-disk format of a rewind journal: constants only.
//
// docs/FORMAT.md is the prose twin of this header: grammar, a worked example and the
// reasons. Every integer is little-endian. Every size below is the sum of its fields.
//
// A segment file is a 64-byte segment header followed by records. Each record is a
// 56-byte record header, then `payload_length` bytes of payload, then zero bytes up to
// the next multiple of 8 (records start 8-byte aligned). The first record of every
// flush batch carries kFlagBatchStart: recovery uses it to tell a torn tail (damage
// inside the last, never-synced batch) from corruption (damage followed by a later
// batch, which was only written after the damaged one had been synced). A record a
// client's FLUSH, FUA request or mark waited for carries kFlagFlushPoint: the state
// up to it is one the client was told is durable.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rwd::format {

// ---- Segment header -------------------------------------------------------------
inline constexpr char kSegmentMagic[8] = {'R', 'E', 'W', 'I', 'N', 'D', 'S', 'G'};
// Version 2 gave the record header its codec byte; version 1 segments (whose codec
// bytes are all zero) are still read.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestFormatVersion = 1;

// offset  size  field
//      0     8  magic "REWINDSG"
//      8     4  format_version (kFormatVersion)
//     12     4  header_size (kSegmentHeaderSize)
//     16    16  volume_id (random, shared by the manifest and every segment)
//     32     8  first_seq (seq of the first record this segment may hold)
//     40     8  created_ns (wall clock when the segment was created)
//     48     8  reserved, zero
//     56     8  checksum: XXH3-64 of bytes [0, 56)
inline constexpr size_t kSegmentMagicSize = 8;
inline constexpr size_t kVolumeIdSize = 16;
inline constexpr size_t kSegmentHeaderSize =
    kSegmentMagicSize + 4 + 4 + kVolumeIdSize + 8 + 8 + 8 + 8;
static_assert(kSegmentHeaderSize == 64);
inline constexpr size_t kSegmentHeaderChecksumOffset = 56;

// ---- Record header --------------------------------------------------------------
enum class RecordType : uint8_t {
  kNone = 0,   // reserved: a zero header marks the end of written data (pre-allocated tail)
  kWrite = 1,  // offset, length, payload = the bytes written (payload_length == length)
  kZero = 2,   // offset, length, no payload: the range reads as zeroes afterwards
  kTrim = 3,   // offset, length, no payload: discarded; replay treats it as zeroes
  kMark = 4,   // payload = the mark's name (UTF-8, 1..kMaxMarkName bytes), then for a group
               // mark "\n" and its group line (record.h); offset = length = 0
};
inline constexpr uint8_t kMaxRecordType = 4;

inline constexpr uint8_t kFlagBatchStart = 0x01;  // first record of a flush batch
// The newest record when a FLUSH or FUA request, or a mark, began to wait for the
// journal (set while the record is queued; a FLUSH that arrives while its newest
// record is already being written leaves no flag).
inline constexpr uint8_t kFlagFlushPoint = 0x02;
// A WRITE or ZERO that a newer WRITE or ZERO of the same flush window covered whole
// while both were queued (the plugin's coalesce=on): it carries no data, and its
// payload is the 8-byte little-endian seq of the record that covered it. Replay skips
// it; the points from it up to the next flush point are not restorable exactly.
inline constexpr uint8_t kFlagSuperseded = 0x04;
inline constexpr uint32_t kSupersededPayload = 8;
// A record rewritten by `rewind compact` (or the plugin's retain-coarse=): its range
// and data are what survived of its compaction window, not a client's request. With
// kFlagSuperseded, nothing survived (the payload is then the seq of the window's last
// record). The states from the first such record of a window up to the window's last
// record, which carries kFlagFlushPoint, are not restorable exactly.
inline constexpr uint8_t kFlagCompacted = 0x08;
inline constexpr uint8_t kKnownFlags =
    kFlagBatchStart | kFlagFlushPoint | kFlagSuperseded | kFlagCompacted;

// How a payload is stored. Only a WRITE record that is not superseded may be stored
// other than as is; its `length` is then the payload's length once decoded, and
// payload_length and payload_checksum are those of the bytes stored.
enum class Codec : uint8_t {
  kNone = 0,  // the payload as is
  // The WRITE's bytes cut into frames of kCodecFrameSize (the last may be shorter),
  // each compressed on its own as one zstd frame: a table of each frame's stored size
  // (u32 each, ceil(length / kCodecFrameSize) of them), then the frames. A read of a
  // few KiB of a large record decompresses only the frames it lies in.
  kZstd = 1,
};
inline constexpr uint8_t kMaxCodec = 1;
inline constexpr uint32_t kCodecFrameSize = 64u << 10;
inline constexpr uint32_t kCodecFrameEntrySize = 4;

// Whether a record is sealed (seal.h): its payload then ends with a trailer of the
// key's id, the nonce and the tag, and payload_length and payload_checksum cover the
// trailer too. What precedes the trailer (the body) is the payload the record would
// have unsealed, encrypted for a WRITE that is not superseded, in the clear otherwise.
// Only copies shipped with ship-key= hold sealed records; a journal never does.
enum class Seal : uint8_t {
  kNone = 0,
  kXChaCha20Poly1305 = 1,  // libsodium's crypto_aead_xchacha20poly1305_ietf, detached tag
};
inline constexpr uint8_t kMaxSeal = 1;
inline constexpr uint32_t kSealKeyIdSize = 8;
inline constexpr uint32_t kSealNonceSize = 24;
inline constexpr uint32_t kSealTagSize = 16;
inline constexpr uint32_t kSealTrailerSize = kSealKeyIdSize + kSealNonceSize + kSealTagSize;
static_assert(kSealTrailerSize == 48);

// offset  size  field
//      0     8  header_checksum: XXH3-64 of bytes [8, 56)
//      8     1  type (RecordType)
//      9     1  flags
//     10     1  codec (Codec; zero in format version 1)
//     11     1  seal (Seal; zero in format version 1)
//     12     4  payload_length
//     16     8  seq
//     24     8  time_ns
//     32     8  offset (bytes into the volume)
//     40     8  length (bytes of the volume the record covers)
//     48     8  payload_checksum: XXH3-64 of the payload bytes as stored (of zero bytes
//                if none)
inline constexpr size_t kRecordHeaderSize = 8 + 1 + 1 + 2 + 4 + 8 + 8 + 8 + 8 + 8;
static_assert(kRecordHeaderSize == 56);
inline constexpr size_t kRecordChecksummedOffset = 8;
inline constexpr size_t kRecordAlignment = 8;
static_assert(kRecordHeaderSize % kRecordAlignment == 0);
static_assert(kSegmentHeaderSize % kRecordAlignment == 0);

// nbdkit refuses reads and writes over 64 MiB, so no payload is larger.
inline constexpr uint32_t kMaxPayload = 64u << 20;
inline constexpr uint32_t kMaxMarkName = 255;
// A MARK's whole payload: the name, and a group mark's group line.
inline constexpr uint32_t kMaxMarkPayload = 1024;

// Bytes a record occupies in a segment, padding included.
constexpr uint64_t record_span(uint32_t payload_length) {
  return kRecordHeaderSize +
         ((uint64_t{payload_length} + kRecordAlignment - 1) / kRecordAlignment) * kRecordAlignment;
}
static_assert(record_span(0) == 56 && record_span(1) == 64 && record_span(4096) == 4152);

// ---- Segment index (segments/<first_seq>.idx) -------------------------------------
// Derived data: one entry per record of a sealed segment, so that a target resolves
// without reading payloads. Rebuilt from the segment when missing or damaged.
//
// Version 2 adds chunk checksums: for each WRITE record whose payload is longer than
// kIndexChunkSize (and that is not superseded), the XXH3-64 of every kIndexChunkSize
// bytes of its payload (the last chunk may be shorter), so that a read of part of a
// record can be checked without reading all of it. They are computed from the payload
// before it is written (or, when an index is rebuilt, after the record's own checksum
// has been checked), and the trailer covers them. Version 1 indexes (no chunk
// checksums, a 48-byte header) are still read.
//
// Version 3 adds the codec byte (entry byte 43). The chunk checksums of a WRITE stored
// with a codec are those of its decoded bytes: a partial read decodes the frames it
// lies in and checks the chunks it uses. Versions 1 and 2 (codec always kNone) are
// still read.
//
// header: offset size field
//              0    8 magic "REWINDIX"
//              8    4 index_version (kIndexVersion; 1 is still read)
//             12    4 entry_size (kIndexEntrySize)
//             16   16 volume_id
//             32    8 first_seq of the segment
//             40    8 entry count
//             48    4 chunk_size (kIndexChunkSize)            version 2 only
//             52    4 reserved, zero                          version 2 only
//             56    8 chunk checksum count                    version 2 only
// entry:       0    8 seq
//              8    8 time_ns
//             16    8 offset
//             24    8 length
//             32    8 position (byte offset of the record header in the segment)
//             40    1 type
//             41    1 flags (as in the record header)
//             42    1 index flags: kIndexFlagChunkSums, the entry's chunk checksums follow
//             43    1 codec (as in the record header; version 3, zero before)
//             44    4 payload_length
//             48    8 payload_checksum (as in the record header)
// chunk checksums (version 2): 8 bytes each, those of each flagged entry in entry order
// trailer:     0    8 XXH3-64 of every byte before it
inline constexpr char kIndexMagic[8] = {'R', 'E', 'W', 'I', 'N', 'D', 'I', 'X'};
inline constexpr uint32_t kIndexVersion = 3;
inline constexpr size_t kIndexHeaderSizeV1 = 8 + 4 + 4 + kVolumeIdSize + 8 + 8;
inline constexpr size_t kIndexHeaderSize = kIndexHeaderSizeV1 + 4 + 4 + 8;
inline constexpr size_t kIndexEntrySize = 8 + 8 + 8 + 8 + 8 + 1 + 1 + 1 + 1 + 4 + 8;
inline constexpr size_t kIndexTrailerSize = 8;
inline constexpr size_t kIndexChunkSumSize = 8;
static_assert(kIndexHeaderSizeV1 == 48 && kIndexHeaderSize == 64 && kIndexEntrySize == 56);
inline constexpr uint32_t kIndexChunkSize = 4096;
inline constexpr uint8_t kIndexFlagChunkSums = 0x01;
// The entry's record is sealed (index version 3; older readers refuse the flag).
inline constexpr uint8_t kIndexFlagSealed = 0x02;
inline constexpr const char* kIndexSuffix = ".idx";

// ---- Files in a journal directory -----------------------------------------------
inline constexpr const char* kManifestName = "MANIFEST";
inline constexpr const char* kLockName = "LOCK";
inline constexpr const char* kControlSocketName = "control.sock";
inline constexpr const char* kSegmentDir = "segments";
inline constexpr const char* kBaseDir = "base";
inline constexpr const char* kSegmentSuffix = ".seg";
inline constexpr const char* kImageXattr = "user.rewind.volume-id";
inline constexpr uint32_t kManifestVersion = 1;

}  // namespace rwd::format
