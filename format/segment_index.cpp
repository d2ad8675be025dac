#include "rewind/format/segment_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/base/hash.h"
#include "rewind/format/file_names.h"
#include "rewind/format/record.h"
#include "rewind/format/segment.h"

namespace rwd {

bool wants_chunk_sums(format::RecordType type, uint8_t flags, uint64_t length) {
  return type == format::RecordType::kWrite && !(flags & format::kFlagSuperseded) &&
         length > format::kIndexChunkSize;
}

uint64_t chunk_sum(std::span<const uint8_t> chunk) {
  return XXH3_64bits(chunk.data(), chunk.size());
}

void chunk_sums_of(std::span<const uint8_t> payload, uint8_t* out) {
  for (size_t at = 0; at < payload.size(); at += format::kIndexChunkSize, out += 8) {
    const uint64_t sum = chunk_sum(
        payload.subspan(at, std::min<size_t>(format::kIndexChunkSize, payload.size() - at)));
    std::memcpy(out, &sum, 8);
  }
}

void add_chunk_sums(IndexEntry* e, std::span<const uint8_t> payload, std::vector<uint64_t>* sums,
                    const uint8_t* precomputed) {
  if (!wants_chunk_sums(e->type, e->flags, static_cast<uint32_t>(payload.size()))) return;
  e->chunk_sums = static_cast<uint32_t>(sums->size());
  const size_t n = chunk_count(static_cast<uint32_t>(payload.size()));
  sums->resize(sums->size() + n);
  if (precomputed != nullptr) {
    std::memcpy(sums->data() + e->chunk_sums, precomputed, n * 8);
  } else {
    chunk_sums_of(payload, reinterpret_cast<uint8_t*>(sums->data() + e->chunk_sums));
  }
}

Status write_segment_index(const std::string& journal_dir, const std::string& segment_file,
                           const VolumeId& volume_id, uint64_t first_seq,
                           std::span<const IndexEntry> entries,
                           std::span<const uint64_t> chunk_sums) {
  std::string buf(format::kIndexHeaderSize + entries.size() * format::kIndexEntrySize +
                      chunk_sums.size() * format::kIndexChunkSumSize + format::kIndexTrailerSize,
                  '\0');
  auto* p = reinterpret_cast<uint8_t*>(buf.data());
  std::memcpy(p, format::kIndexMagic, 8);
  put_u32(p + 8, format::kIndexVersion);
  put_u32(p + 12, format::kIndexEntrySize);
  std::memcpy(p + 16, volume_id.data(), format::kVolumeIdSize);
  put_u64(p + 32, first_seq);
  put_u64(p + 40, entries.size());
  put_u32(p + 48, format::kIndexChunkSize);
  put_u64(p + 56, chunk_sums.size());
  uint8_t* e = p + format::kIndexHeaderSize;
  for (const IndexEntry& x : entries) {
    put_u64(e, x.seq);
    put_u64(e + 8, x.time_ns);
    put_u64(e + 16, x.offset);
    put_u64(e + 24, x.length);
    put_u64(e + 32, x.position);
    e[40] = static_cast<uint8_t>(x.type);
    e[41] = x.flags;
    e[42] = static_cast<uint8_t>((x.has_chunk_sums() ? format::kIndexFlagChunkSums : 0) |
                                 (x.seal != format::Seal::kNone ? format::kIndexFlagSealed : 0));
    e[43] = static_cast<uint8_t>(x.codec);
    put_u32(e + 44, x.payload_length);
    put_u64(e + 48, x.payload_checksum);
    e += format::kIndexEntrySize;
  }
  for (uint64_t sum : chunk_sums) {
    put_u64(e, sum);
    e += format::kIndexChunkSumSize;
  }
  put_u64(e, XXH3_64bits(p, static_cast<size_t>(e - p)));
  const std::string path = segment_path(journal_dir, index_file_name(segment_file));
  const std::string tmp = path + ".tmp";
  {
    auto f = create_temp_file(tmp, O_WRONLY);
    if (!f) return f.status();
    REWIND_RETURN_IF_ERROR(f->pwrite_full(std::span(p, buf.size()), 0));
    REWIND_RETURN_IF_ERROR(f->close());
  }
  if (file_system().rename(tmp.c_str(), path.c_str()) != 0)
    return Status::io_error(fmt::format("cannot rename {} to {}", tmp, path), errno);
  return Status::ok();
}

namespace {

// What is wrong with an index header `h` for segment `seg` of `volume_id`, or null.
const char* header_problem(const uint8_t* h, uint32_t version, uint64_t sum_count,
                           const VolumeId& volume_id, const ManifestSegment& seg) {
  if (std::memcmp(h + 16, volume_id.data(), format::kVolumeIdSize) != 0) return "of another volume";
  if (get_u64(h + 32) != seg.first_seq || get_u64(h + 40) != seg.records)
    return "does not match the manifest";
  if (version >= 2 && (get_u32(h + 48) != format::kIndexChunkSize || get_u32(h + 52) != 0))
    return "has an unknown chunk size";
  if (sum_count >= IndexEntry::kNoChunkSums) return "has too many chunk checksums";
  return nullptr;
}

// One entry's fields into *x; returns its index flags (which say whether chunk
// checksums follow, not stored in the entry).
uint8_t decode_entry(const uint8_t* e, IndexEntry* x) {
  x->seq = get_u64(e);
  x->time_ns = get_u64(e + 8);
  x->offset = get_u64(e + 16);
  x->length = get_u64(e + 24);
  x->position = get_u64(e + 32);
  x->type = static_cast<format::RecordType>(e[40]);
  x->flags = e[41];
  x->payload_length = get_u32(e + 44);
  x->payload_checksum = get_u64(e + 48);
  x->codec = static_cast<format::Codec>(e[43]);
  x->seal =
      (e[42] & format::kIndexFlagSealed) ? format::Seal::kXChaCha20Poly1305 : format::Seal::kNone;
  return e[42];
}

// Reads `count` chunk checksums at *pos into the hash and, if `keep`, into *out.
Status read_chunk_sums(const File& f, uint64_t* pos, uint64_t count, XXH3_state_t* hash, bool keep,
                       std::vector<uint64_t>* out) {
  constexpr uint64_t kBatch = 131072;  // 1 MiB
  std::vector<uint8_t> sums(std::min(count, kBatch) * format::kIndexChunkSumSize);
  for (uint64_t i = 0; i < count;) {
    const uint64_t n = std::min(count - i, kBatch);
    std::span<uint8_t> chunk(sums.data(), n * format::kIndexChunkSumSize);
    REWIND_RETURN_IF_ERROR(f.pread_full(chunk, *pos));
    XXH3_64bits_update(hash, chunk.data(), chunk.size());
    if (keep)
      for (const uint8_t* e = chunk.data(); e < chunk.data() + chunk.size();
           e += format::kIndexChunkSumSize)
        out->push_back(get_u64(e));
    i += n;
    *pos += chunk.size();
  }
  return Status::ok();
}

// Reads the entries at *pos into the hash and out->entries, checking each against
// the segment; the first that does not fit sets *problem, after which they are only
// hashed. *sums_claimed counts the chunk checksums the entries say follow.
Status read_entries(const File& f, uint64_t* pos, const ManifestSegment& seg, uint32_t version,
                    uint64_t sum_count, XXH3_state_t* hash, const char** problem,
                    SegmentEntries* out, uint64_t* sums_claimed) {
  constexpr size_t kChunkEntries = 16384;  // 896 KiB
  std::vector<uint8_t> buf(std::min<uint64_t>(seg.records, kChunkEntries) *
                           format::kIndexEntrySize);
  for (uint64_t i = 0; i < seg.records;) {
    const uint64_t n = std::min<uint64_t>(seg.records - i, kChunkEntries);
    std::span<uint8_t> chunk(buf.data(), n * format::kIndexEntrySize);
    REWIND_RETURN_IF_ERROR(f.pread_full(chunk, *pos));
    XXH3_64bits_update(hash, chunk.data(), chunk.size());
    for (const uint8_t* e = chunk.data(); *problem == nullptr && e < chunk.data() + chunk.size();
         e += format::kIndexEntrySize) {
      IndexEntry x;
      const uint8_t index_flags = decode_entry(e, &x);
      if (index_flags & format::kIndexFlagChunkSums) {
        x.chunk_sums = static_cast<uint32_t>(*sums_claimed);
        *sums_claimed += x.length > format::kMaxPayload
                             ? sum_count + 1
                             : chunk_count(static_cast<uint32_t>(x.length));
      }
      if (x.seq != seg.first_seq + out->entries.size() || (x.flags & ~format::kKnownFlags) != 0 ||
          (index_flags & ~(format::kIndexFlagChunkSums | format::kIndexFlagSealed)) != 0 ||
          (x.seal != format::Seal::kNone &&
           (version < 3 || x.has_chunk_sums() || x.payload_length < format::kSealTrailerSize)) ||
          e[43] > (version >= 3 ? format::kMaxCodec : 0) ||
          (x.codec != format::Codec::kNone && x.type != format::RecordType::kWrite) ||
          x.position + format::record_span(x.payload_length) > seg.bytes ||
          (x.has_chunk_sums() && (version == 1 || !wants_chunk_sums(x.type, x.flags, x.length) ||
                                  *sums_claimed > sum_count)))
        *problem = "entries do not match the segment";
      else
        out->entries.push_back(x);
    }
    i += n;
    *pos += chunk.size();
  }
  return Status::ok();
}

}  // namespace

Result<SegmentEntries> read_segment_index(const std::string& journal_dir, const VolumeId& volume_id,
                                          const ManifestSegment& seg) {
  const std::string name = index_file_name(seg.file);
  auto bad = [&](const char* why) {
    return Status::corruption(fmt::format("index {}: {}", name, why));
  };
  auto f = File::open(segment_path(journal_dir, name), O_RDONLY);
  if (!f) return f.status();
  auto size = f->size();
  if (!size) return size.status();
  if (*size < format::kIndexHeaderSizeV1 + format::kIndexTrailerSize) return bad("too short");
  // Read in chunks straight into the entries, checksumming as it goes: a large index
  // (a million records is 56 MB) is never held twice. Damage found in the fields is
  // reported only if the checksum holds; otherwise the checksum is what failed.
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> hash(XXH3_createState(), XXH3_freeState);
  if (!hash || XXH3_64bits_reset(hash.get()) != XXH_OK)
    return Status::io_error("cannot allocate a checksum state", ENOMEM);
  uint8_t h[format::kIndexHeaderSize];
  REWIND_RETURN_IF_ERROR(f->pread_full(std::span(h, format::kIndexHeaderSizeV1), 0));
  if (std::memcmp(h, format::kIndexMagic, 8) != 0) return bad("not an index");
  const uint32_t version = get_u32(h + 8);
  if (version < 1 || version > format::kIndexVersion || get_u32(h + 12) != format::kIndexEntrySize)
    return bad("not a version 1, 2 or 3 index");
  size_t header_size = format::kIndexHeaderSizeV1;
  uint64_t sum_count = 0;
  if (version >= 2) {
    header_size = format::kIndexHeaderSize;
    if (*size < header_size + format::kIndexTrailerSize) return bad("too short");
    REWIND_RETURN_IF_ERROR(f->pread_full(
        std::span(h + format::kIndexHeaderSizeV1, header_size - format::kIndexHeaderSizeV1),
        format::kIndexHeaderSizeV1));
    sum_count = get_u64(h + 56);
  }
  XXH3_64bits_update(hash.get(), h, header_size);
  // Counts are checked against the file's size before anything is allocated for them.
  if (seg.records > (*size - header_size) / format::kIndexEntrySize ||
      sum_count > *size / format::kIndexChunkSumSize ||
      *size != header_size + seg.records * format::kIndexEntrySize +
                   sum_count * format::kIndexChunkSumSize + format::kIndexTrailerSize)
    return bad("does not match the manifest");
  const char* problem = header_problem(h, version, sum_count, volume_id, seg);
  SegmentEntries out;
  if (problem == nullptr) {
    out.entries.reserve(seg.records);
    out.chunk_sums.reserve(sum_count);
  }
  uint64_t pos = header_size;
  uint64_t sums_claimed = 0;  // by the entries read so far
  REWIND_RETURN_IF_ERROR(
      read_entries(*f, &pos, seg, version, sum_count, hash.get(), &problem, &out, &sums_claimed));
  if (problem == nullptr && sums_claimed != sum_count)
    problem = "chunk checksums do not match the entries";
  REWIND_RETURN_IF_ERROR(
      read_chunk_sums(*f, &pos, sum_count, hash.get(), problem == nullptr, &out.chunk_sums));
  uint8_t trailer[format::kIndexTrailerSize];
  REWIND_RETURN_IF_ERROR(f->pread_full(trailer, pos));
  if (get_u64(trailer) != XXH3_64bits_digest(hash.get())) return bad("checksum mismatch");
  if (problem != nullptr) return bad(problem);
  out.index_version = version;
  return out;
}

bool index_agrees(const SegmentEntries& index, const SegmentEntries& scanned) {
  if (index.index_version != 1)
    return index.entries == scanned.entries && index.chunk_sums == scanned.chunk_sums;
  return std::equal(index.entries.begin(), index.entries.end(), scanned.entries.begin(),
                    scanned.entries.end(), [](IndexEntry a, IndexEntry b) {
                      a.chunk_sums = b.chunk_sums = IndexEntry::kNoChunkSums;
                      return a == b;
                    });
}

Result<SegmentEntries> scan_segment_entries(const std::string& journal_dir,
                                            const VolumeId& volume_id, const ManifestSegment& seg) {
  auto reader = SegmentReader::open(segment_path(journal_dir, seg.file), seg.sealed);
  if (!reader) return reader.status();
  reader->keep_sealed();  // an index holds no chunk checksums of a sealed record's data
  if (reader->header().volume_id != volume_id)
    return Status::corruption(fmt::format("segment {} belongs to another volume", seg.file));
  SegmentEntries out;
  RecordView rec;
  for (;;) {
    auto more = reader->next(&rec);
    if (!more) return more.status();
    if (!*more) break;
    const RecordHeader& h = rec.header;
    IndexEntry e{h.seq,  h.time_ns, h.offset,         h.length,          rec.position,
                 h.type, h.flags,   h.payload_length, h.payload_checksum};
    e.codec = h.codec;
    e.seal = h.seal;
    if (h.seal == format::Seal::kNone) add_chunk_sums(&e, rec.payload, &out.chunk_sums);
    out.entries.push_back(e);
  }
  if (seg.sealed && (reader->last_seq() != seg.last_seq || reader->end() != seg.bytes))
    return Status::corruption(fmt::format(
        "segment {} holds seq {}..{} in {} bytes but the manifest says {}..{} in {} bytes",
        seg.file, seg.first_seq, reader->last_seq(), reader->end(), seg.first_seq, seg.last_seq,
        seg.bytes));
  out.torn_tail = reader->torn_tail();
  return out;
}

Result<SegmentEntries> load_segment_entries(const std::string& journal_dir,
                                            const VolumeId& volume_id, const ManifestSegment& seg,
                                            bool repair, const Logger& logger) {
  if (seg.sealed) {
    auto idx = read_segment_index(journal_dir, volume_id, seg);
    if (idx) return idx;
    auto scanned = scan_segment_entries(journal_dir, volume_id, seg);
    if (!scanned) return scanned;
    scanned->index_rebuilt = true;
    std::string why = idx.status().errno_value() == ENOENT ? "missing" : idx.status().message();
    if (repair) {
      Status w = write_segment_index(journal_dir, seg.file, volume_id, seg.first_seq,
                                     scanned->entries, scanned->chunk_sums);
      log_to(
          logger, w ? LogLevel::kInfo : LogLevel::kWarning,
          w ? fmt::format("rebuilt the index of segment {} from its records ({})", seg.file, why)
            : fmt::format("could not rewrite the index of segment {}: {}", seg.file, w.message()));
    } else {
      log_to(logger, LogLevel::kInfo,
             fmt::format("index of segment {} is unusable ({}); read its records instead", seg.file,
                         why));
    }
    return scanned;
  }
  return scan_segment_entries(journal_dir, volume_id, seg);
}

Result<MarkPayload> read_mark(const std::string& journal_dir, const ManifestSegment& seg,
                              const IndexEntry& e) {
  auto f = File::open(segment_path(journal_dir, seg.file), O_RDONLY);
  if (!f) return f.status();
  std::vector<uint8_t> rec(format::kRecordHeaderSize + e.payload_length);
  REWIND_RETURN_IF_ERROR(f->pread_full(rec, e.position));
  RecordHeader h;
  Status st = decode_header(rec.data(), &h);
  std::span<const uint8_t> stored(rec.data() + format::kRecordHeaderSize, e.payload_length);
  if (st.is_ok() && (h.seq != e.seq || h.type != format::RecordType::kMark))
    st = Status::corruption("record does not match its index entry");
  if (st.is_ok() && payload_checksum(stored) != h.payload_checksum)
    st = Status::corruption("payload checksum mismatch");
  if (!st)
    return Status::corruption(
        fmt::format("segment {} offset {} seq {}: {}", seg.file, e.position, e.seq, st.message()));
  return mark_payload_of(h, stored.data());
}

}  // namespace rwd
