// The manifest: which base snapshot and segments make up a volume, and how far the
// image is known to be up to date. Text, one item per line, ending in a checksum line;
// replaced atomically (write MANIFEST.tmp, fsync, rename, fsync dir), never edited in
// place. docs/FORMAT.md gives the grammar.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/format/segment.h"

namespace rwd {

struct ManifestSegment {
  std::string file;  // name inside <journal>/segments
  uint64_t first_seq = 0;
  bool sealed = false;
  // Known for sealed segments only:
  uint64_t last_seq = 0;  // first_seq - 1 when empty
  uint64_t bytes = 0;     // file size
  uint64_t records = 0;
  uint64_t first_time_ns = 0;
  uint64_t last_time_ns = 0;
  // The window of the last compaction that rewrote the segment (`rewind compact`),
  // 0 if none did: at most one state per window of this length is exact in it, besides
  // marks.
  uint64_t granularity_ns = 0;

  bool operator==(const ManifestSegment&) const = default;
};

struct ManifestMark {
  std::string name;
  uint64_t seq = 0;
  uint64_t time_ns = 0;
  bool operator==(const ManifestMark&) const = default;
};

struct Manifest {
  VolumeId volume_id{};
  std::string image_path;  // absolute path of the image the volume was created from
  uint64_t image_size = 0;
  uint64_t created_ns = 0;
  std::string base_file;  // name inside <journal>/base
  uint64_t base_seq = 0;  // the base snapshot holds every record with seq <= base_seq
  uint64_t base_time_ns = 0;
  // The base file is a sealed base snapshot (seal.h, in a copy shipped with ship-key=),
  // not an image of the volume.
  bool base_sealed = false;
  // The base file's size: the volume's, or that of its sealed form.
  uint64_t base_file_bytes() const;
  // The image holds every record with seq <= checkpoint_seq (it was synced after they
  // were applied). Records after it are redone from the journal at start-up.
  uint64_t checkpoint_seq = 0;
  // When the volume is shipped to a log server (the plugin's ship=): the server has
  // acknowledged every record up to this seq as durable. Retention keeps the segments
  // after it. Stored at checkpoints, so it may lag the server by a checkpoint interval.
  std::optional<uint64_t> shipped_seq;
  std::vector<ManifestSegment> segments;  // in seq order; at most the last is open
  // Marks in sealed segments, in seq order (those in the open segment are found by
  // reading it).
  std::vector<ManifestMark> marks;

  bool operator==(const Manifest&) const = default;

  std::string serialize() const;
  // `where` names the file for error messages.
  static Result<Manifest> parse(std::string_view text, const std::string& where);

  static Result<Manifest> load(const std::string& journal_dir);
  Status store(const std::string& journal_dir) const;
};

}  // namespace rwd
