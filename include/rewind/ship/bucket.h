// A volume's copy in S3-compatible object storage (docs/FORMAT.md, "A volume in a
// bucket"): the objects' names, the bucket manifest that names them, and the base map.
//
//   PREFIX/MANIFEST                              the bucket manifest; written last
//   PREFIX/writers/<gen>                         a writer's claim, created once
//   PREFIX/base/<volume id>-<seq>/MAP            the base snapshot's non-zero chunks
//   PREFIX/base/<volume id>-<seq>/<offset>       one chunk of it
//   PREFIX/segments/<gen>/<file>                 a sealed segment, byte for byte
//   PREFIX/segments/<gen>/<index file>           its index
//   PREFIX/tail/<gen>/<first seq>-<offset>       bytes of the open segment from offset
//
// Numbers are 20 decimal digits, so that names sort as numbers. Every object but
// MANIFEST is written once and never changed; MANIFEST is replaced only by the writer
// holding the newest generation, with If-Match on the version it wrote last.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/format/manifest.h"

namespace rwd {

namespace bucket {

inline constexpr uint64_t kBaseChunkBytes = 4u << 20;
inline constexpr const char* kManifestName = "MANIFEST";

std::string writer_key(uint64_t gen);
std::string base_dir(const VolumeId& volume, uint64_t base_seq);
std::string base_map_key(const VolumeId& volume, uint64_t base_seq);
std::string base_chunk_key(const VolumeId& volume, uint64_t base_seq, uint64_t offset);
std::string segment_key(uint64_t gen, const std::string& file);
std::string tail_key(uint64_t gen, uint64_t first_seq, uint64_t offset);

}  // namespace bucket

// A sealed segment in the bucket.
struct BucketSegment {
  std::string file;    // as in the journal manifest
  uint64_t gen = 0;    // of the writer that stored it
  bool index = false;  // its index is stored beside it
  bool operator==(const BucketSegment&) const = default;
};

// A piece of the open segment: its bytes [offset, end).
struct BucketTail {
  uint64_t first_seq = 0;  // of the segment
  uint64_t offset = 0;
  uint64_t end = 0;
  uint64_t gen = 0;
  bool operator==(const BucketTail&) const = default;
};

struct BucketManifest {
  uint64_t writer = 0;  // the generation of the writer that stored it
  // The generation of the shipper whose history this is: the writer, unless a
  // maintenance pass (`rewind retain s3://`) stored it on the shipper's behalf.
  uint64_t owner = 0;
  // The journal as the bucket holds it: base, sealed segments, perhaps an open one
  // (its bytes in `tails`), marks. Its segments' files are the names in segments/<gen>/.
  Manifest journal;
  std::vector<BucketSegment> segments;  // the sealed ones of `journal`, in the same order
  std::vector<BucketTail> tails;        // the open one's pieces, in offset order
  // The newest record the bucket holds.
  uint64_t last_seq = 0;

  bool operator==(const BucketManifest&) const = default;
  std::string serialize() const;
  // Checks the checksum and that segments and tails agree with the journal manifest.
  static Result<BucketManifest> parse(std::string_view text, const std::string& where);
  // The key of every object the manifest names (base map and chunks excluded, which
  // the base map names).
  std::vector<std::string> object_names() const;
};

// One chunk of the base snapshot that holds data: its checksum (XXH3-64), and the base
// seq under whose prefix its object lives (a new base keeps the objects of the chunks
// it shares with the one before).
struct BaseChunk {
  uint64_t offset = 0;
  uint64_t sum = 0;
  uint64_t seq = 0;
  // The bytes its object holds when fewer than the chunk's (a sealed base's slot,
  // stored without its trailing zeroes); 0: the chunk's length.
  uint64_t stored = 0;
  bool operator==(const BaseChunk&) const = default;
};

// Which chunks of the base snapshot's file hold data, and their checksums (XXH3-64);
// chunks not listed read as zeroes. The file is the volume's image, or for a sealed
// copy the sealed base snapshot (format/seal.h), chunked alike.
struct BaseMap {
  uint64_t file_size = 0;  // Manifest::base_file_bytes(); "image-size" in the text
  uint64_t chunk_bytes = bucket::kBaseChunkBytes;
  std::vector<BaseChunk> chunks;  // in offset order
  bool operator==(const BaseMap&) const = default;
  std::string serialize() const;
  static Result<BaseMap> parse(std::string_view text, const std::string& where);
  uint64_t chunk_length(uint64_t offset) const { return std::min(chunk_bytes, file_size - offset); }
  // The bytes of the chunks' objects (what the bucket stores of the base).
  uint64_t data_bytes() const {
    uint64_t n = 0;
    for (const BaseChunk& c : chunks) n += c.stored != 0 ? c.stored : chunk_length(c.offset);
    return n;
  }
};

// What a writer's claim object says, for the error a refused writer gives.
struct WriterClaim {
  uint64_t gen = 0;
  std::string host;
  uint64_t pid = 0;
  uint64_t started_ns = 0;
  VolumeId volume_id{};
  std::string serialize() const;
  static Result<WriterClaim> parse(std::string_view text, const std::string& where);
  // "generation 4 (host h1, pid 77, started 2026-...)"
  std::string describe() const;
};

}  // namespace rwd
