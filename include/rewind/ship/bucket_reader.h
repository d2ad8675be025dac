// Reading a volume's copy in a bucket (docs/FORMAT.md, "A volume in a bucket"): the
// bucket manifest laid out as a journal directory in a local cache, so that every
// reader of journals (JournalHistory, JournalView, inspect, verify) works on it.
//
// Opening fetches what every reader needs: the manifest, the segment indexes, the
// records of marks, and the open segment's bytes. The base snapshot and the sealed
// segments are sparse files of their sizes, filled as a view reads them (ViewFetcher):
// only what its extent map needs, in blocks (the base's chunks, 1 MiB of a segment),
// with ranged GETs in parallel. Base chunks are checked against the base map's
// checksums as they arrive; segment bytes by the view, as always. With a limit, the
// blocks fetched or found longest ago are dropped (holes punched) to stay under it,
// never one a read in progress holds.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/replay/view.h"
#include "rewind/ship/bucket.h"
#include "rewind/ship/s3_client.h"

namespace rwd {

struct BucketReadOptions {
  // Where the cache lives: a new directory made private to this user; empty: a new
  // temporary one in $TMPDIR (default /var/tmp). Removed when the cache is closed.
  std::string cache_dir;
  uint64_t cache_limit = 0;  // bytes of fetched base and segment data kept; 0: no limit
  unsigned parallel = 8;     // ranged GETs at a time
};

class BucketCache : public ViewFetcher {
 public:
  static Result<std::shared_ptr<BucketCache>> open(std::unique_ptr<S3Client> client,
                                                   BucketReadOptions o, Logger logger);
  ~BucketCache() override;

  // The cache's journal directory.
  const std::string& dir() const { return dir_; }
  const BucketManifest& manifest() const { return manifest_; }
  // The ETag of MANIFEST as it was read.
  const std::string& manifest_etag() const { return etag_; }
  const BaseMap& base_map() const { return base_map_; }

  Result<std::shared_ptr<void>> fetch(std::span<const Range> ranges) const override;
  // Fetches every byte (for `rewind verify`); the limit does not apply.
  Status fetch_everything();

  struct Stats {
    uint64_t fetched_bytes = 0;  // of base and segments, since open
    uint64_t requests = 0;       // to the bucket, since open
    uint64_t evicted_bytes = 0;
    uint64_t cached_bytes = 0;  // held now
  };
  Stats stats() const;

 private:
  BucketCache() = default;
  // Reads the manifest and lays the cache out (open() tries again when an object the
  // manifest names was deleted meanwhile).
  Status load();
  bool manifest_read_ = false;
  // One file of the cache: the base snapshot (file -1) or a segment.
  struct CachedFile {
    std::string path;
    uint64_t size = 0;
    uint64_t block = 0;  // bytes per block
    // Per block: kMissing, kFetched (may be dropped) or kFixed (never dropped: a base
    // chunk of zeroes, which no object holds, or a block of a resident file).
    std::vector<uint8_t> present;
    std::vector<uint64_t> used;  // per block: the tick of its last use
    bool resident = false;       // fetched whole at open, never dropped
  };
  CachedFile& file_of(int64_t segment) const;
  // Fetches the missing blocks of `wanted` ((file, block) pairs). Exclusive lock held.
  Status fetch_blocks(const std::vector<std::pair<int64_t, uint64_t>>& wanted) const;
  // Drops blocks read longest ago, none of `keep`, until `incoming` more bytes fit.
  void make_room(uint64_t incoming, const std::vector<std::pair<int64_t, uint64_t>>& keep) const;
  // The blocks of `ranges`, and whether all are present.
  std::vector<std::pair<int64_t, uint64_t>> blocks_of(std::span<const Range> ranges) const;
  Status fetch_whole(int64_t segment);

  std::unique_ptr<S3Client> client_;
  BucketReadOptions opts_;
  Logger logger_;
  std::string dir_;
  bool remove_dir_ = false;
  BucketManifest manifest_;
  std::string etag_;
  BaseMap base_map_;
  mutable std::shared_mutex mu_;  // exclusive to fetch or drop blocks, shared to read them
  mutable CachedFile base_;
  mutable std::vector<CachedFile> segments_;
  mutable uint64_t tick_ = 0;
  mutable Stats stats_;
};

// The reading commands on s3://BUCKET/PREFIX: the S3 client for it, from the AWS
// conventions (resolve_s3_options) with `endpoint`, `region` and `ca_file` if given.
Result<std::unique_ptr<S3Client>> open_bucket_client(const std::string& uri,
                                                     const std::string& endpoint,
                                                     const std::string& region,
                                                     const std::string& ca_file);

}  // namespace rwd
