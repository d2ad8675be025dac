// The writing side of a volume's copy in a bucket (docs/FORMAT.md, "A volume in a
// bucket"): the base snapshot once, then the journal's bytes as they become durable,
// each step made visible by replacing the bucket manifest last.
//
// One writer per prefix. A writer claims a generation of its own (create-once
// writers/<gen>) and names every object it stores with it, so two writers never
// overwrite each other's objects; it replaces MANIFEST only with If-Match on the
// version it stored last (create-once for the first), so a manifest another writer
// stored in between is never overwritten: that writer is then refused for good
// (kBusy), never interleaved. The journal directory remembers the generation that last
// wrote from it (SHIP-WRITER), so a restart that finds the manifest of another writer
// is refused too.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/history/retention.h"
#include "rewind/journal/journal.h"
#include "rewind/ship/bucket.h"
#include "rewind/ship/s3_client.h"

namespace rwd {

// The name of the journal directory's record of its writer generation.
inline constexpr const char* kShipWriterName = "SHIP-WRITER";

// What SHIP-WRITER holds: the bucket prefix, and the generations this journal directory
// claimed there (the newest last, at most 16).
struct ShipWriterState {
  std::string uri;
  std::vector<uint64_t> gens;
};
// std::nullopt when the file is absent or not in this form.
std::optional<ShipWriterState> read_ship_writer(const std::string& journal_dir);
Status write_ship_writer(const std::string& journal_dir, const ShipWriterState& s);

struct BucketRetainResult {
  size_t changed = 0;                    // segments folded into the base or compacted
  uint64_t sent = 0;                     // bytes stored
  uint64_t deleted = 0;                  // objects deleted
  uint64_t first_seq = 0, last_seq = 0;  // the copy's restorable range after
};

// `rewind retain s3://`: a maintenance pass on a volume's copy whose shipper is stopped.
// Applies `policy` at `now_ns` as `rewind retain` does to a journal, in a local cache
// of the copy (everything fetched), stores the new base chunks and segments, switches
// the manifest on the shipper's behalf (as writer of a generation of its own; the
// owner stays, so the shipper goes on from it), and deletes what the manifest no
// longer names; then deletes every object of its own or an older generation that
// nothing names (what interrupted passes and shippers left). A copy that changes
// during the pass is kBusy, and nothing it named is touched.
Result<BucketRetainResult> retain_bucket(std::unique_ptr<S3Client> client,
                                         const RetentionPolicy& policy, uint64_t now_ns,
                                         const Logger& logger);

class BucketWriter {
 public:
  // Reads the bucket's manifest and checks it against the journal (`m`, its manifest,
  // and `durable`, its newest durable record): the same volume, not ahead of it, not
  // behind its base, last written by this journal's writer. Then claims a new
  // generation and records it in the journal directory. A refusal that retrying
  // cannot cure (another volume, another writer) is kBusy with a message saying why.
  static Result<std::unique_ptr<BucketWriter>> open(std::unique_ptr<S3Client> client,
                                                    std::string journal_dir, const Manifest& m,
                                                    uint64_t durable_seq, Logger logger);

  uint64_t generation() const { return gen_; }
  // The newest record the bucket holds; 0 with no manifest stored yet.
  std::optional<uint64_t> shipped_seq() const {
    if (!manifest_) return std::nullopt;
    return manifest_->last_seq;
  }
  bool has_base() const { return manifest_.has_value(); }
  // The bucket manifest as last stored or read (std::nullopt: none yet).
  const std::optional<BucketManifest>& manifest() const { return manifest_; }
  const BaseMap& base_map() const { return base_map_; }

  // Stores the base snapshot of `m` (its non-zero chunks not stored already, then the
  // base map) and the first manifest. *bytes counts the bytes sent.
  Status store_base(const Manifest& m, uint64_t* bytes);

  // Stores what the journal holds durably beyond the bucket: sealed segments whole
  // (with their indexes), the open one's new bytes as a tail piece; then the manifest;
  // then removes the tail pieces a sealed segment replaced. `m` is a manifest taken
  // after `durable`. *bytes counts the bytes sent. A manifest stored by another writer
  // is kBusy (refused for good).
  //
  // What the journal's own retention did to history the bucket holds, the copy does
  // too, in the same step: a base the journal moved forward (its chunks that the
  // folded records changed, read from the bucket's indexes of them, stored under the
  // new base seq; the others keep their objects) and segments compaction rewrote.
  // What the new manifest no longer names is deleted after it is stored.
  Status ship(const Manifest& m, const Journal::Position& durable, uint64_t* bytes);
  // Whether ship() has anything to do for the journal's manifest `m` and position.
  bool behind(const Manifest& m, const Journal::Position& durable) const;

  const S3Client& client() const { return *client_; }

 private:
  BucketWriter(std::unique_ptr<S3Client> c, std::string dir, Logger l)
      : client_(std::move(c)), dir_(std::move(dir)), logger_(std::move(l)) {}
  friend Result<BucketRetainResult> retain_bucket(std::unique_ptr<S3Client> client,
                                                  const RetentionPolicy& policy, uint64_t now_ns,
                                                  const Logger& logger);
  // Deletes the objects under the prefix that `m` (and its base map `map`) do not name,
  // of generation gen_ or older. Returns how many.
  Result<uint64_t> clean(const BucketManifest& m, const BaseMap& map);
  Status claim_generation(uint64_t after, const VolumeId& volume);
  // Stores the chunks of the journal's base snapshot (of `m`) that hold data and that
  // `old` does not hold with the same bytes, and the base map; with `only`, reads just
  // the chunks it marks (the others are as in `old`). `have`: objects already stored.
  Result<BaseMap> store_base_chunks(const Manifest& m, const BaseMap* old,
                                    const std::vector<bool>* only,
                                    const std::set<std::pair<std::string, uint64_t>>& have,
                                    uint64_t* bytes);
  Status upload_segment(const ManifestSegment& seg, BucketSegment* b, uint64_t* bytes);
  // The base chunks the records of `segments` change (from their indexes in the
  // bucket); an error if one has none.
  Result<std::vector<bool>> chunks_changed_by(
      const std::vector<std::pair<ManifestSegment, BucketSegment>>& segments, const Manifest& j);
  Status mirror_rebase(const Manifest& m, BucketManifest* next, std::vector<std::string>* dropped,
                       std::optional<BaseMap>* map, uint64_t* bytes);
  Status mirror_compaction(const Manifest& m, BucketManifest* next,
                           std::vector<std::string>* dropped, uint64_t* bytes);
  // Stores `next` as MANIFEST over the version last stored (or as the first).
  Status store_manifest(const BucketManifest& next);

  std::unique_ptr<S3Client> client_;
  std::string dir_;
  Logger logger_;
  uint64_t gen_ = 0;
  std::optional<BucketManifest> manifest_;  // as last stored or read
  std::string etag_;                        // of MANIFEST as last stored or read
  BaseMap base_map_;                        // of the manifest's base
  std::vector<uint64_t> my_gens_;           // the generations this journal claimed there
  bool maintainer_ = false;                 // a maintenance pass, not a shipper
};

}  // namespace rwd
