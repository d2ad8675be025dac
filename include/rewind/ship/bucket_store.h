// The store of rewind-server in a bucket (`--store s3://BUCKET/PREFIX`): each volume's
// copy under PREFIX/NAME, in the layout a plugin's `ship=s3://` writes (docs/FORMAT.md,
// "A volume in a bucket"), so that every reader of a bucket works on it, and so that
// several servers can front one bucket.
//
// A volume being received has a spool in the server's cache directory
// (CACHE/spool/NAME): a journal directory that StoredVolume fills as it would a store
// on disk, which a BucketWriter ships from. Records are acknowledged only once the
// bucket manifest names them; what the spool holds beyond that is never acknowledged.
// The spool keeps only what the bucket does not hold whole: the base snapshot while it
// arrives, and the open segment; files the bucket holds are removed from it.
//
// One writer per volume, also across servers: each session claims a generation of
// its own and replaces the manifest only with If-Match (bucket_writer.h). A server
// whose spool did not write the bucket's manifest last (another server took the
// volume meanwhile, or its cache was lost) starts its spool again from the bucket:
// the manifest, and the open segment's pieces. A session on a server that another
// server overtook is refused (ERROR 8 BUSY) at its next commit, never interleaved; the
// shipper reconnects, to either server.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/ship/bucket_writer.h"
#include "rewind/ship/s3_client.h"
#include "rewind/ship/store.h"

namespace rwd {

struct BucketStoreOptions {
  S3Options s3;           // resolved (resolve_s3_options)
  S3Location where;       // the store; a volume's objects are under PREFIX/NAME/
  std::string cache_dir;  // prepared (prepare_bucket_store)
};

// Checks that the server can use the bucket (its credentials are good and the bucket
// exists: one GET of an object that is not there) and prepares the cache directory as
// prepare_store does a store's, with spool/ and read/ inside; what read/ holds (caches
// of readers a crash left) is removed.
Status prepare_bucket_store(BucketStoreOptions* o, const Logger& logger);

// Where readers' caches go: CACHE/read.
std::string bucket_read_dir(const BucketStoreOptions& o);

// A volume's location s3://BUCKET/PARENT/NAME as the store (s3://BUCKET/PARENT) and
// the volume's name in it, for a BucketVolume of the plugin's own (ship=s3:// with
// ship-key=). An error when there is no NAME or it is not a volume name.
Result<std::pair<S3Location, std::string>> split_volume_location(const S3Location& volume);

// The S3 client of volume `name`'s copy (PREFIX/NAME).
Result<std::unique_ptr<S3Client>> bucket_volume_client(const BucketStoreOptions& o,
                                                       const std::string& name);

class BucketVolume final : public ReceivingVolume {
 public:
  // Opens volume `name`: its spool (made again from the bucket when it did not write
  // the bucket's manifest last), then the bucket writer, which stores what the spool
  // holds and the bucket does not (a base received whole, records never committed).
  static Result<std::unique_ptr<BucketVolume>> open(const BucketStoreOptions& o,
                                                    const std::string& name, Logger logger);
  ~BucketVolume() override;

  proto::Welcome state() const override;
  // The bytes of the copy in the bucket (base chunks, segments, tail pieces); the base
  // received so far while it arrives.
  Result<uint64_t> stored_bytes() const override;
  Result<proto::Ack> begin_base(const proto::BaseBegin& b) override;
  Result<proto::Ack> base_data(uint64_t offset, std::span<const uint8_t> data) override;
  Result<proto::Ack> base_zero(uint64_t offset, uint64_t length) override;
  Result<proto::Ack> append(const proto::Records& records) override;
  bool uncommitted() const override { return uncommitted_ > 0; }
  uint64_t uncommitted_bytes() const override { return uncommitted_; }
  Result<proto::Ack> commit() override;
  proto::ErrorCode last_error() const override { return last_error_; }

  // The generation this session claimed in the bucket (0 before the base is whole).
  uint64_t generation() const { return writer_ ? writer_->generation() : 0; }
  // Requests sent to the bucket since open.
  uint64_t requests() const { return writer_ ? writer_->client().requests() : 0; }

 private:
  BucketVolume(const BucketStoreOptions& o, std::string name, Logger logger)
      : opts_(o), name_(std::move(name)), logger_(std::move(logger)) {}
  // Opens the spool; starts it again from the bucket's manifest `bm` unless it wrote it.
  Status open_spool(const std::optional<BucketManifest>& bm, S3Client& client);
  // Once the spool's base is whole: the writer, the base stored, the spool shipped.
  Status start_writer();
  // The ACK of base data the spool took (`spooled`): the spool's, or once the base is
  // whole, the bucket's after it is stored there.
  Result<proto::Ack> base_received(Result<proto::Ack> spooled);
  // Removes from the spool the files the bucket holds whole.
  void trim();
  proto::Ack bucket_ack() const;
  Status fail(Status st);

  BucketStoreOptions opts_;
  std::string name_;
  Logger logger_;
  std::string spool_root_;  // CACHE/spool
  std::string uri_;         // s3://BUCKET/PREFIX/NAME
  std::unique_ptr<StoredVolume> spool_;
  std::unique_ptr<BucketWriter> writer_;
  std::set<std::string> trimmed_;  // spool files removed already
  uint64_t uncommitted_ = 0;
  proto::ErrorCode last_error_ = proto::ErrorCode::kServer;
};

}  // namespace rwd
