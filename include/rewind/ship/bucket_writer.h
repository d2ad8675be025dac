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
#include <string>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/journal/journal.h"
#include "rewind/ship/bucket.h"
#include "rewind/ship/s3_client.h"

namespace rwd {

// The name of the journal directory's record of its writer generation.
inline constexpr const char* kShipWriterName = "SHIP-WRITER";

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

  // Stores the base snapshot of `m` (its non-zero chunks not stored already, then the
  // base map) and the first manifest. *bytes counts the bytes sent.
  Status store_base(const Manifest& m, uint64_t* bytes);

  // Stores what the journal holds durably beyond the bucket: sealed segments whole
  // (with their indexes), the open one's new bytes as a tail piece; then the manifest;
  // then removes the tail pieces a sealed segment replaced. `m` is a manifest taken
  // after `durable`. *bytes counts the bytes sent. A manifest stored by another writer
  // is kBusy (refused for good).
  Status ship(const Manifest& m, const Journal::Position& durable, uint64_t* bytes);

  const S3Client& client() const { return *client_; }

 private:
  BucketWriter(std::unique_ptr<S3Client> c, std::string dir, Logger l)
      : client_(std::move(c)), dir_(std::move(dir)), logger_(std::move(l)) {}
  Status claim_generation(uint64_t after, const VolumeId& volume);
  // Stores `next` as MANIFEST over the version last stored (or as the first).
  Status store_manifest(const BucketManifest& next);

  std::unique_ptr<S3Client> client_;
  std::string dir_;
  Logger logger_;
  uint64_t gen_ = 0;
  std::optional<BucketManifest> manifest_;  // as last stored or read
  std::string etag_;                        // of MANIFEST as last stored or read
};

}  // namespace rwd
