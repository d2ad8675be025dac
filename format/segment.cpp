#include "rewind/format/segment.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "rewind/base/hash.h"
#include "rewind/base/hex.h"
#include "rewind/format/payload_codec.h"
#include "rewind/format/seal.h"

namespace rwd {

namespace {
constexpr size_t kReadWindow = 1u << 20;
const uint8_t kZeroPad[format::kRecordAlignment] = {};

std::string base_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}
}  // namespace

std::string volume_id_hex(const VolumeId& id) {
  return hex_of(id);
}

bool parse_volume_id(std::string_view hex, VolumeId* out) {
  return parse_hex(hex, *out);
}

VolumeId random_volume_id() {
  VolumeId id;
  size_t done = 0;
  while (done < id.size()) {
    ssize_t n = ::getrandom(id.data() + done, id.size() - done, 0);
    if (n > 0) done += static_cast<size_t>(n);
  }
  return id;
}

void encode_segment_header(const SegmentHeader& h, uint8_t* out) {
  std::memset(out, 0, format::kSegmentHeaderSize);
  std::memcpy(out, format::kSegmentMagic, format::kSegmentMagicSize);
  put_u32(out + 8, format::kFormatVersion);
  put_u32(out + 12, format::kSegmentHeaderSize);
  std::memcpy(out + 16, h.volume_id.data(), format::kVolumeIdSize);
  put_u64(out + 32, h.first_seq);
  put_u64(out + 40, h.created_ns);
  put_u64(out + format::kSegmentHeaderChecksumOffset,
          XXH3_64bits(out, format::kSegmentHeaderChecksumOffset));
}

Status decode_segment_header(const uint8_t* in, SegmentHeader* out) {
  if (std::memcmp(in, format::kSegmentMagic, format::kSegmentMagicSize) != 0)
    return Status::corruption("not a rewind segment (bad magic)");
  if (get_u64(in + format::kSegmentHeaderChecksumOffset) !=
      XXH3_64bits(in, format::kSegmentHeaderChecksumOffset))
    return Status::corruption("segment header checksum mismatch");
  uint32_t version = get_u32(in + 8);
  if (version < format::kOldestFormatVersion || version > format::kFormatVersion)
    return Status::corruption(
        fmt::format("segment format version {} (this build reads {} to {}; a newer version "
                    "needs a newer rewind)",
                    version, format::kOldestFormatVersion, format::kFormatVersion));
  if (get_u32(in + 12) != format::kSegmentHeaderSize)
    return Status::corruption("segment header size mismatch");
  std::memcpy(out->volume_id.data(), in + 16, format::kVolumeIdSize);
  out->first_seq = get_u64(in + 32);
  out->created_ns = get_u64(in + 40);
  return Status::ok();
}

// ---- SegmentWriter ---------------------------------------------------------------

Result<SegmentWriter> SegmentWriter::create(const std::string& path, const SegmentHeader& header,
                                            uint64_t prealloc_limit) {
  auto f = create_new_file(path);
  if (!f) return f.status();
  uint8_t hdr[format::kSegmentHeaderSize];
  encode_segment_header(header, hdr);
  REWIND_RETURN_IF_ERROR(f->pwrite_full(hdr, 0));
  SegmentWriter w(std::move(*f), prealloc_limit);
  REWIND_RETURN_IF_ERROR(w.reserve(format::kSegmentHeaderSize + 1));
  // Appends bypass the page cache where the file system takes O_DIRECT.
  auto direct = File::open(path, O_RDWR | O_DIRECT);
  void* stage = nullptr;
  if (direct && ::posix_memalign(&stage, kDirectAlign, kStageSize) == 0) {
    w.stage_.reset(static_cast<uint8_t*>(stage));
    std::memcpy(w.stage_.get(), hdr, sizeof hdr);
    w.stage_tail_ = sizeof hdr;
    w.file_ = std::move(*direct);
  }
  REWIND_RETURN_IF_ERROR(w.file_.sync());
  REWIND_RETURN_IF_ERROR(sync_dir(parent_dir(path)));
  return w;
}

Status SegmentWriter::reserve(uint64_t need) {
  if (need <= allocated_ || prealloc_limit_ <= allocated_) return Status::ok();
  uint64_t target = std::max(need, std::min(need + kPreallocStep, prealloc_limit_));
  if (file_system().fallocate(file_.fd(), 0, static_cast<off_t>(allocated_),
                              static_cast<off_t>(target - allocated_)) != 0) {
    if (errno != EOPNOTSUPP)
      return Status::io_error(fmt::format("cannot reserve {} bytes for {}", target, file_.path()),
                              errno);
    return Status::ok();  // the file system cannot reserve: appends extend the file instead
  }
  allocated_ = target;
  return Status::ok();
}

Status SegmentWriter::append(std::span<const RecordRef> records) {
  if (direct()) return append_direct(records);
  iov_.clear();
  uint64_t total = 0;
  for (const RecordRef& r : records) {
    iov_.push_back({const_cast<uint8_t*>(r.header), format::kRecordHeaderSize});
    if (!r.payload.empty())
      iov_.push_back({const_cast<uint8_t*>(r.payload.data()), r.payload.size()});
    size_t pad = static_cast<size_t>(format::record_span(static_cast<uint32_t>(r.payload.size())) -
                                     format::kRecordHeaderSize - r.payload.size());
    if (pad != 0) iov_.push_back({const_cast<uint8_t*>(kZeroPad), pad});
    total += format::record_span(static_cast<uint32_t>(r.payload.size()));
  }
  REWIND_RETURN_IF_ERROR(reserve(end_ + total));
  REWIND_RETURN_IF_ERROR(file_.pwritev_full(iov_.data(), static_cast<int>(iov_.size()), end_));
  end_ += total;
  return Status::ok();
}

Status SegmentWriter::append_direct(std::span<const RecordRef> records) {
  uint64_t total = 0;
  for (const RecordRef& r : records)
    total += format::record_span(static_cast<uint32_t>(r.payload.size()));
  // Whole blocks are written: reserved space keeps them inside the file's size.
  REWIND_RETURN_IF_ERROR(reserve((end_ + total + kDirectAlign - 1) / kDirectAlign * kDirectAlign));
  // What to go back to if a write fails: the segment then ends where it ended.
  const uint64_t start = end_, base = stage_base_;
  const size_t tail = stage_tail_;
  std::array<uint8_t, kDirectAlign> saved;
  std::memcpy(saved.data(), stage_.get(), tail);
  uint8_t* stage = stage_.get();
  size_t used = stage_tail_;
  auto put = [&](const uint8_t* p, size_t n) -> Status {
    while (n > 0) {
      size_t k = std::min(n, kStageSize - used);
      if (p != nullptr) {
        std::memcpy(stage + used, p, k);
        p += k;
      } else {
        std::memset(stage + used, 0, k);
      }
      used += k;
      n -= k;
      if (used == kStageSize) {
        REWIND_RETURN_IF_ERROR(write_stage(used));
        used = stage_tail_;
      }
    }
    return Status::ok();
  };
  Status st;
  for (const RecordRef& r : records) {
    const size_t span = format::record_span(static_cast<uint32_t>(r.payload.size()));
    st = put(r.header, format::kRecordHeaderSize);
    if (st) st = put(r.payload.data(), r.payload.size());
    if (st) st = put(nullptr, span - format::kRecordHeaderSize - r.payload.size());
    if (!st) break;
    end_ += span;
  }
  if (st && used > stage_tail_) st = write_stage(used);
  if (!st) {
    // The file may hold part of the batch after `start`; the next append overwrites
    // it (the journal cuts the segment at its last sync instead, Journal::recover).
    end_ = start;
    stage_base_ = base;
    stage_tail_ = tail;
    std::memcpy(stage_.get(), saved.data(), tail);
    return st;
  }
  return Status::ok();
}

Status SegmentWriter::write_stage(size_t used) {
  const size_t len = (used + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
  // Zeroes after the data, as in the reserved tail that recovery reads as the end.
  std::memset(stage_.get() + used, 0, len - used);
  REWIND_RETURN_IF_ERROR(file_.pwrite_full(std::span(stage_.get(), len), stage_base_));
  const size_t keep_from = used / kDirectAlign * kDirectAlign;
  stage_tail_ = used - keep_from;
  if (stage_tail_ != 0) std::memmove(stage_.get(), stage_.get() + keep_from, stage_tail_);
  stage_base_ += keep_from;
  return Status::ok();
}

Status SegmentWriter::seal() {
  REWIND_RETURN_IF_ERROR(file_.truncate(end_));
  return file_.sync();
}

Status SegmentWriter::cut(uint64_t end) {
  end_ = end;
  allocated_ = end;
  return seal();
}

// ---- SegmentReader ---------------------------------------------------------------

Result<SegmentReader> SegmentReader::open(const std::string& path, bool sealed) {
  auto f = File::open(path, O_RDONLY);
  if (!f) return f.status();
  SegmentReader r(std::move(*f), sealed);
  auto size = r.file_.size();
  if (!size) return size.status();
  r.file_size_ = *size;
  auto got = r.fill(0, format::kSegmentHeaderSize);
  if (!got) return got.status();
  if (*got < format::kSegmentHeaderSize)
    return Status::corruption(fmt::format("segment {}: file is {} bytes, shorter than its header",
                                          base_name(path), r.file_size_));
  Status st = decode_segment_header(r.at(0), &r.header_);
  if (!st)
    return Status::corruption(
        fmt::format("segment {} offset 0: {}", base_name(path), st.message()));
  r.expected_seq_ = r.header_.first_seq;
  return r;
}

Result<size_t> SegmentReader::fill(uint64_t pos, size_t n) {
  if (pos >= buf_start_ && pos + n <= buf_start_ + buf_len_) return n;
  // A whole window, but no more than the file holds: small segments (and fuzz
  // inputs) need no 1 MiB buffer.
  const uint64_t left = file_size_ > pos ? file_size_ - pos : 0;
  size_t want = std::max(n, static_cast<size_t>(std::min<uint64_t>(kReadWindow, left)));
  if (buf_.size() < want) buf_.resize(want);
  size_t got = 0;
  REWIND_RETURN_IF_ERROR(file_.pread_full(std::span(buf_.data(), want), pos, &got));
  buf_start_ = pos;
  buf_len_ = got;
  return std::min(n, got);
}

bool SegmentReader::shrank() {
  auto size = file_.size();
  if (!size || *size >= file_size_) return false;
  file_size_ = *size;
  return true;
}

Status SegmentReader::corruption(uint64_t pos, const std::string& why) const {
  return Status::corruption(fmt::format("segment {} offset {} seq {}: {}", base_name(file_.path()),
                                        pos, expected_seq_, why));
}

Result<bool> SegmentReader::damaged(const std::string& why, bool clean_if_nothing_follows) {
  if (sealed_) return corruption(pos_, why);
  // Look for a later batch start behind the damage: read the rest of the file in
  // windows, skipping holes, and try every aligned position whose first word (the
  // header checksum) is not zero.
  constexpr uint64_t kH = format::kRecordHeaderSize;
  constexpr uint64_t kA = format::kRecordAlignment;
  bool anything_follows = false;
  uint64_t p = pos_ + kA;
  while (p + kH <= file_size_) {
    off_t data = ::lseek(file_.fd(), static_cast<off_t>(p), SEEK_DATA);
    if (data < 0) break;  // ENXIO: only holes from p on
    uint64_t q = (std::max<uint64_t>(p, static_cast<uint64_t>(data)) + kA - 1) / kA * kA;
    off_t hole = ::lseek(file_.fd(), static_cast<off_t>(q), SEEK_HOLE);
    uint64_t region_end =
        hole < 0 ? file_size_ : std::min<uint64_t>(static_cast<uint64_t>(hole), file_size_);
    while (q < region_end && q + kH <= file_size_) {
      auto got = fill(q, static_cast<size_t>(std::min<uint64_t>(kReadWindow, file_size_ - q)));
      if (!got) return got.status();
      if (*got < kH) break;
      const uint8_t* w = at(q);
      const size_t last = (*got - kH) / kA * kA;  // last header start inside the window
      for (size_t off = 0; off <= last; off += kA) {
        if (get_u64(w + off) == 0) continue;
        anything_follows = true;
        RecordHeader rh;
        if (decode_header(w + off, &rh).is_ok() && (rh.flags & format::kFlagBatchStart) != 0 &&
            rh.seq > expected_seq_) {
          return corruption(pos_, fmt::format("{}, and a later batch (seq {}) follows at offset {}",
                                              why, rh.seq, q + off));
        }
      }
      q += last + kA;
    }
    p = std::max(q, region_end);
  }
  done_ = true;
  if (!(clean_if_nothing_follows && !anything_follows))
    torn_ = fmt::format("offset {} seq {}: {}", pos_, expected_seq_, why);
  return false;
}

Result<bool> SegmentReader::next(RecordView* out) {
  if (done_) return false;
  if (pos_ + format::kRecordHeaderSize > file_size_) {
    if (pos_ == file_size_) {
      done_ = true;
      return false;
    }
    if (sealed_) return corruption(pos_, "record header cut off at end of file");
    size_t rest = static_cast<size_t>(file_size_ - pos_);
    auto got = fill(pos_, rest);
    if (!got) return got.status();
    if (std::all_of(at(pos_), at(pos_) + *got, [](uint8_t b) { return b == 0; })) {
      done_ = true;
      return false;
    }
    return damaged("record header cut off at end of file", false);
  }
  auto got = fill(pos_, format::kRecordHeaderSize);
  if (!got) return got.status();
  if (*got < format::kRecordHeaderSize) {
    // Read again up to the file's new end (each time it is shorter: this ends).
    if (shrank()) return next(out);
    return damaged("record header cut off at end of file", false);
  }
  const uint8_t* h = at(pos_);
  if (is_zero_header(h)) {
    if (sealed_) return corruption(pos_, "zero bytes where a record header should be");
    return damaged("zero bytes where a record header should be", true);
  }
  RecordHeader rh;
  Status st = decode_header(h, &rh);
  if (!st) return damaged(st.message(), false);
  if (rh.seq != expected_seq_)
    return corruption(pos_, fmt::format("seq {} where {} was expected", rh.seq, expected_seq_));
  if (rh.time_ns < last_time_)
    return corruption(
        pos_, fmt::format("time {} is before the previous record's {}", rh.time_ns, last_time_));
  uint64_t span = format::record_span(rh.payload_length);
  if (pos_ + span > file_size_) return damaged("payload cut off at end of file", false);
  got = fill(pos_, static_cast<size_t>(span));
  if (!got) return got.status();
  if (*got < span) {
    (void)shrank();
    return damaged("payload cut off at end of file", false);
  }
  std::span<const uint8_t> payload(at(pos_) + format::kRecordHeaderSize, rh.payload_length);
  if (payload_checksum(payload) != rh.payload_checksum)
    return damaged("payload checksum mismatch", false);
  out->header = rh;
  out->stored = payload;
  if (rh.seal != format::Seal::kNone) {
    if (keep_sealed_ && keys_ == nullptr) {
      payload = {};
      rh.codec = format::Codec::kNone;  // nothing to decode
    } else {
      if (keys_ == nullptr || keys_->empty())
        return Status::invalid(fmt::format(
            "segment {} seq {}: the record is sealed (encrypted) with key {}; give its key "
            "file (--key)",
            base_name(file_.path()), rh.seq, key_id_hex(sealed_key_id(payload))));
      RecordHeader unsealed;
      if (Status o = open_record(*keys_, header_.volume_id, rh, payload, &opened_, &unsealed); !o) {
        if (o.code() == Status::Code::kCorruption) return corruption(pos_, o.message());
        return Status::invalid(
            fmt::format("segment {} seq {}: {}", base_name(file_.path()), rh.seq, o.message()));
      }
      payload = opened_;
    }
  }
  if (rh.codec != format::Codec::kNone) {
    // The stored bytes are the ones written: a frame that does not decode is damage
    // done before the checksum was taken, never a torn write.
    decoded_.resize(rh.length);
    if (Status d = decode_payload(rh.codec, payload, decoded_); !d)
      return corruption(pos_, d.message());
    payload = decoded_;
  }
  out->payload = payload;
  out->position = pos_;
  pos_ += span;
  ++expected_seq_;
  last_time_ = rh.time_ns;
  ++records_;
  return true;
}

}  // namespace rwd
