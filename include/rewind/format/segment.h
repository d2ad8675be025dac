// Segment files: an append-only run of records behind a 64-byte header (format.h).
//
// SegmentWriter appends whole flush batches in a few large writes and syncs them;
// SegmentReader reads records back, verifying every checksum, seq continuity and time
// order, and classifies damage:
//   - in a sealed segment any damage is corruption;
//   - in the open segment, damage with no later batch start behind it is a torn tail
//     (the last batch was never synced, so nothing in it was acknowledged as flushed);
//     damage followed by a valid batch start is corruption, because a batch is only
//     written after the one before it has been synced.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rewind/base/file.h"
#include "rewind/base/status.h"
#include "rewind/format/format.h"
#include "rewind/format/record.h"

namespace rwd {

class Keyring;

using VolumeId = std::array<uint8_t, format::kVolumeIdSize>;

std::string volume_id_hex(const VolumeId& id);
bool parse_volume_id(std::string_view hex, VolumeId* out);
VolumeId random_volume_id();

struct SegmentHeader {
  VolumeId volume_id{};
  uint64_t first_seq = 0;
  uint64_t created_ns = 0;
};

void encode_segment_header(const SegmentHeader& h, uint8_t* out);
Status decode_segment_header(const uint8_t* in, SegmentHeader* out);

// One record to append: its encoded header and its payload (may be empty). The
// pointers must stay valid until append() returns.
struct RecordRef {
  const uint8_t* header;
  std::span<const uint8_t> payload;
};

// Appends go around the page cache (O_DIRECT) where the file system allows: records
// are copied into a reused, aligned staging buffer of kStageSize and written in
// aligned blocks. The journal is written once and rarely read, so it should neither
// evict the host's useful cache nor pay for new cache pages. The block holding the
// end of the previous append is written again, with the same bytes in front of the
// new ones: a torn write of it leaves those bytes as they were. Where O_DIRECT is not
// supported (tmpfs, some network file systems), appends are ordinary vectored writes.
class SegmentWriter {
 public:
  // Creates `path`, which must not exist: header written, file and directory synced.
  // Space is reserved ahead of the appends in steps of kPreallocStep, up to
  // `prealloc_limit` bytes, so that syncing appended data rarely needs a size update,
  // while the unwritten tail that recovery must scan stays short.
  static Result<SegmentWriter> create(const std::string& path, const SegmentHeader& header,
                                      uint64_t prealloc_limit);
  static constexpr uint64_t kPreallocStep = 16ull << 20;
  static constexpr size_t kDirectAlign = 4096;  // offsets, lengths and memory of O_DIRECT
  static constexpr size_t kStageSize = 4u << 20;
  SegmentWriter(SegmentWriter&&) = default;
  SegmentWriter& operator=(SegmentWriter&&) = default;

  // Appends the records in order, padding each to kRecordAlignment. Not synced.
  Status append(std::span<const RecordRef> records);
  // Whether appends bypass the page cache (see the class comment).
  bool direct() const { return stage_ != nullptr; }
  Status sync() const { return file_.datasync(); }
  // The segment's file, for a sync on another thread (BackgroundTask::start_sync).
  const File& file() const { return file_; }
  // Cuts the pre-allocated tail off and fsyncs: the file then ends at end().
  Status seal();
  // Forgets everything appended after `end` (a point the file was synced at) and
  // seals the file there.
  Status cut(uint64_t end);

  uint64_t end() const { return end_; }
  const std::string& path() const { return file_.path(); }

 private:
  struct FreeDeleter {
    void operator()(uint8_t* p) const { ::free(p); }
  };
  SegmentWriter(File f, uint64_t limit) : file_(std::move(f)), prealloc_limit_(limit) {}
  Status reserve(uint64_t need);
  Status append_direct(std::span<const RecordRef> records);
  // Writes stage_[0, used) at stage_base_, padded with zeroes to a whole block, then
  // keeps the last partial block at the front of stage_.
  Status write_stage(size_t used);
  File file_;
  uint64_t prealloc_limit_;
  uint64_t allocated_ = format::kSegmentHeaderSize;  // file size, reserved space included
  uint64_t end_ = format::kSegmentHeaderSize;        // offset where the next record goes
  std::vector<struct iovec> iov_;                    // reused between appends
  // O_DIRECT only: the staging buffer, the file offset of its first byte (a multiple
  // of kDirectAlign), and how many bytes at its front are already in the file.
  std::unique_ptr<uint8_t, FreeDeleter> stage_;
  uint64_t stage_base_ = 0;
  size_t stage_tail_ = 0;
};

// A record read back. `payload` (decoded: a WRITE's `length` bytes whatever its
// codec, opened if sealed) and `stored` (the payload as stored, which payload_checksum
// covers) point into the reader's buffers and stay valid only until the next call to
// SegmentReader::next(). `header` is the record's header as stored (its codec, seal
// and payload_length those of `stored`). A sealed record read without its key has no
// `payload` (see SegmentReader::keep_sealed).
struct RecordView {
  RecordHeader header;
  std::span<const uint8_t> payload;
  std::span<const uint8_t> stored;
  uint64_t position = 0;  // byte offset of the record header in the segment file
};

class SegmentReader {
 public:
  // `sealed`: whether the manifest lists the segment as sealed (see the class comment).
  static Result<SegmentReader> open(const std::string& path, bool sealed);
  SegmentReader(SegmentReader&&) = default;

  const SegmentHeader& header() const { return header_; }

  // Sealed records (seal.h) are opened with these keys. Without them, a sealed record
  // is an error (kInvalid, naming the key) unless keep_sealed() was called.
  void set_keys(const Keyring* keys) { keys_ = keys; }
  // Sealed records are returned without being opened, with an empty `payload`: for
  // readers that handle only the stored form (a store, shipping, verify without key).
  void keep_sealed() { keep_sealed_ = true; }

  // Reads the next record into *out and returns true, or returns false at the end of
  // the records. A corruption status names the segment, the byte offset and the seq.
  Result<bool> next(RecordView* out);

  // After next() returned false: where the valid records end, and for an open segment
  // whether a torn tail was found there (and why).
  uint64_t end() const { return pos_; }
  std::optional<std::string> torn_tail() const { return torn_; }
  uint64_t last_seq() const { return expected_seq_ - 1; }
  uint64_t records() const { return records_; }

 private:
  SegmentReader(File f, bool sealed) : file_(std::move(f)), sealed_(sealed) {}
  // Makes [pos, pos+n) available in buf_; returns how many of those bytes exist.
  Result<size_t> fill(uint64_t pos, size_t n);
  const uint8_t* at(uint64_t pos) const { return buf_.data() + (pos - buf_start_); }
  // After a read came up short of file_size_: whether the file is now shorter (an open
  // segment sealed, which cuts it to its records' end, while it was read); if so,
  // file_size_ is its new size.
  bool shrank();
  // Damage at pos_: the end of the records (returns false; sets torn_ unless
  // `clean_if_nothing_follows` and only zeroes and holes follow) or corruption.
  Result<bool> damaged(const std::string& why, bool clean_if_nothing_follows);
  Status corruption(uint64_t pos, const std::string& why) const;

  File file_;
  bool sealed_;
  SegmentHeader header_;
  uint64_t file_size_ = 0;
  uint64_t pos_ = format::kSegmentHeaderSize;
  uint64_t expected_seq_ = 0;
  uint64_t last_time_ = 0;
  uint64_t records_ = 0;
  bool done_ = false;
  std::optional<std::string> torn_;
  std::vector<uint8_t> buf_;
  std::vector<uint8_t> decoded_;  // the payload of a record stored with a codec
  std::vector<uint8_t> opened_;   // the body of a sealed record
  const Keyring* keys_ = nullptr;
  bool keep_sealed_ = false;
  uint64_t buf_start_ = 0;
  size_t buf_len_ = 0;
};

}  // namespace rwd
