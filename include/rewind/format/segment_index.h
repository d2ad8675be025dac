// The record entries of a segment: from its index file when sealed (rebuilt from the
// records if the index is missing or damaged), from the records when open.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/format.h"
#include "rewind/format/manifest.h"

namespace rwd {

struct IndexEntry {
  uint64_t seq = 0;
  uint64_t time_ns = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t position = 0;  // of the record header in the segment file
  format::RecordType type = format::RecordType::kNone;
  uint8_t flags = 0;  // the record's (format::kFlag*)
  uint32_t payload_length = 0;
  uint64_t payload_checksum = 0;
  // Index of the record's first chunk checksum in SegmentEntries::chunk_sums, or
  // kNoChunkSums (the record is then checked whole).
  uint32_t chunk_sums = UINT32_MAX;
  format::Codec codec = format::Codec::kNone;  // the record's: how its payload is stored
  format::Seal seal = format::Seal::kNone;     // the record's: sealed (then no chunk sums)

  static constexpr uint32_t kNoChunkSums = UINT32_MAX;
  uint64_t payload_position() const { return position + format::kRecordHeaderSize; }
  bool has_chunk_sums() const { return chunk_sums != kNoChunkSums; }
  bool operator==(const IndexEntry&) const = default;
};

// Chunks of format::kIndexChunkSize bytes in a payload of `payload_length` bytes.
constexpr uint32_t chunk_count(uint32_t payload_length) {
  return (payload_length + format::kIndexChunkSize - 1) / format::kIndexChunkSize;
}

// Whether the index keeps chunk checksums for a record: a WRITE longer than one chunk
// (`length`, its decoded payload's length), not superseded.
bool wants_chunk_sums(format::RecordType type, uint8_t flags, uint64_t length);

// The checksum of one chunk (XXH3-64 of its bytes).
uint64_t chunk_sum(std::span<const uint8_t> chunk);

// Writes the chunk checksums of `payload`, chunk_count(payload.size()) of them, to
// `out` (8 bytes each, in memory order; `out` need not be aligned).
void chunk_sums_of(std::span<const uint8_t> payload, uint8_t* out);

// Gives `e` chunk checksums (appended to *sums) if wants_chunk_sums(); `payload` is its
// payload decoded, already checked or about to be written. `precomputed`, if set, is what
// chunk_sums_of() gave for it (the request path computes them while the bytes are in
// the CPU's cache).
void add_chunk_sums(IndexEntry* e, std::span<const uint8_t> payload, std::vector<uint64_t>* sums,
                    const uint8_t* precomputed = nullptr);

// Writes the index of a sealed segment (temporary name, then rename). Not synced:
// the index is derived data, and a damaged one is detected and rebuilt.
Status write_segment_index(const std::string& journal_dir, const std::string& segment_file,
                           const VolumeId& volume_id, uint64_t first_seq,
                           std::span<const IndexEntry> entries,
                           std::span<const uint64_t> chunk_sums);

struct SegmentEntries {
  std::vector<IndexEntry> entries;
  std::vector<uint64_t> chunk_sums;      // of the entries with has_chunk_sums()
  uint32_t index_version = 0;            // of the index file read (0: read from the records)
  std::optional<std::string> torn_tail;  // open segments only
  bool index_rebuilt = false;
};

// Reads every record of a segment (verifying every checksum) into entries.
Result<SegmentEntries> scan_segment_entries(const std::string& journal_dir,
                                            const VolumeId& volume_id, const ManifestSegment& seg);

// The entries of a segment. For a sealed segment, from its index when that is
// present and consistent with the manifest; otherwise rebuilt from the records (and,
// with `repair`, the index rewritten). For the open segment, scanned.
Result<SegmentEntries> load_segment_entries(const std::string& journal_dir,
                                            const VolumeId& volume_id, const ManifestSegment& seg,
                                            bool repair, const Logger& logger);

// Reads and checks the index file of a sealed segment against the manifest (a
// version 1 index gives no chunk checksums; versions 1 and 2 no codecs).
Result<SegmentEntries> read_segment_index(const std::string& journal_dir, const VolumeId& volume_id,
                                          const ManifestSegment& seg);

// True if `index`, read from an index file, says what `scanned`, read from the
// records, does. A version 1 index, which has no chunk checksums, agrees if its
// entries do.
bool index_agrees(const SegmentEntries& index, const SegmentEntries& scanned);

// Reads the payload of a MARK entry (its name, and a group mark's group) from its
// segment.
Result<MarkPayload> read_mark(const std::string& journal_dir, const ManifestSegment& seg,
                              const IndexEntry& e);

}  // namespace rwd
