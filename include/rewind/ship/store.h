// The store of rewind-server: each volume a journal directory (STORE/NAME/) in the
// same format as a local one, so that every `rewind` command works on it; filled from
// the network (docs/PROTOCOL.md, "Shipping") rather than by the plugin.
//
// While the base snapshot arrives, STORE/NAME/RECEIVING says which one it is,
// base/<seq>.img.partial holds the bytes received, in order, and its .progress file how
// many of them are synced. When the last
// chunk is in, the file is renamed to base/<seq>.img and the manifest written; from
// then on records are appended to segments with the local Journal. Everything is
// synced before it is acknowledged. One shipper at a time per volume (the caller
// ensures it); the volume's directory is locked while open.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "rewind/base/file.h"
#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/journal/journal.h"
#include "rewind/ship/protocol.h"

namespace rwd {

// Makes sure `store_dir` can hold volumes, before the server takes any: an existing
// directory of this user that no one else may write into (check_private_dir; one
// others could read is made private and *tightened says so), or, when it does not
// exist yet, one created private to this user (0700) inside an existing parent.
// Parents are never created, so that a mistyped path fails here rather than start an
// empty store nobody looks at. Sets *created when it made the directory.
Status prepare_store(const std::string& store_dir, bool* created, std::optional<mode_t>* tightened);

// What a shipping session writes into: a volume of a store on disk (StoredVolume) or in
// a bucket (BucketVolume, bucket_store.h). The server answers each frame with the ACK
// its call returns, except that while uncommitted() the records append() took are not
// yet in the store: the ACK is then commit()'s, which may cover several frames.
class ReceivingVolume {
 public:
  virtual ~ReceivingVolume() = default;
  // What the store holds durably, for a WELCOME.
  virtual proto::Welcome state() const = 0;
  // The bytes the volume takes of the store, for its quota.
  virtual Result<uint64_t> stored_bytes() const = 0;
  virtual Result<proto::Ack> begin_base(const proto::BaseBegin& b) = 0;
  virtual Result<proto::Ack> base_data(uint64_t offset, std::span<const uint8_t> data) = 0;
  virtual Result<proto::Ack> base_zero(uint64_t offset, uint64_t length) = 0;
  virtual Result<proto::Ack> append(const proto::Records& records) = 0;
  // Whether records append() took are not in the store yet.
  virtual bool uncommitted() const { return false; }
  // Bytes of records taken and not committed.
  virtual uint64_t uncommitted_bytes() const { return 0; }
  // Stores what append() took; the ACK of what the store then holds.
  virtual Result<proto::Ack> commit() = 0;
  // The protocol's error code for the last failure (kGap, kConflict, kMalformed, kBusy,
  // or kServer for I/O errors).
  virtual proto::ErrorCode last_error() const = 0;
};

class StoredVolume final : public ReceivingVolume {
 public:
  // Opens STORE/NAME, creating it empty if absent (with `create`), and recovers what a
  // crash of the server left: the open segment sealed at its last whole record, a
  // partial base cut to what was synced. Fails with kNotFound when absent and not
  // `create`, kBusy when another process holds it.
  static Result<std::unique_ptr<StoredVolume>> open(const std::string& store_dir,
                                                    const std::string& name, bool create,
                                                    Logger logger);
  StoredVolume(const StoredVolume&) = delete;
  StoredVolume& operator=(const StoredVolume&) = delete;
  ~StoredVolume();

  // What the volume holds durably, for a WELCOME.
  proto::Welcome state() const override;
  // The bytes the volume's directory takes on disk (allocated blocks; holes of the
  // base are free), for its quota.
  Result<uint64_t> stored_bytes() const override;
  // Whether the base snapshot is whole (records may follow).
  bool has_base() const { return journal_ != nullptr; }

  // BASE_BEGIN: starts receiving the base snapshot `b`, or goes on with it if it is
  // the one already arriving. Refused (kConflict) once a base is whole, or when another
  // volume id is arriving under this name.
  Result<proto::Ack> begin_base(const proto::BaseBegin& b) override;
  // BASE_DATA: bytes at `offset`, which must not be past what the store holds (a gap);
  // bytes it holds already are skipped. Synced before it returns.
  Result<proto::Ack> base_data(uint64_t offset, std::span<const uint8_t> data) override;
  // BASE_ZERO: `length` bytes at `offset` read as zeroes; the file is extended over
  // them (a hole where the file system allows). As base_data otherwise.
  Result<proto::Ack> base_zero(uint64_t offset, uint64_t length) override;
  // RECORDS: records already held are skipped; a first seq past durable_seq + 1 is a
  // gap. Appended and synced before it returns.
  Result<proto::Ack> append(const proto::Records& records) override;
  // Records are durable when append() returns: the ACK of what the volume holds.
  Result<proto::Ack> commit() override { return ack(); }

  // Seals the open segment (also done by the destructor).
  Status close();

  // The protocol's error code for the last failure of begin_base, base_data or
  // append (kGap, kConflict, kMalformed, or kServer for I/O errors).
  proto::ErrorCode last_error() const override { return last_error_; }

  const std::string& dir() const { return dir_; }
  // The volume's journal, once the base is whole.
  const Journal* journal() const { return journal_.get(); }

 private:
  StoredVolume(std::string dir, Logger logger) : dir_(std::move(dir)), logger_(std::move(logger)) {}
  Status finish_base();
  // Checks that [offset, offset+length) continues what the store holds of the base.
  Status check_base_run(uint64_t offset, uint64_t length);
  // Records that the base is held up to `end` (the bytes before it synced).
  Status base_held(uint64_t end);
  proto::Ack ack() const;
  // The bytes of the base being received, whole.
  uint64_t whole_base_bytes() const {
    return proto::stored_base_bytes(receiving_->image_size, receiving_->flags);
  }
  Status refuse(proto::ErrorCode code, Status st) {
    last_error_ = code;
    return st;
  }

  std::string dir_;
  Logger logger_;
  File lock_;
  std::unique_ptr<Journal> journal_;  // once the base is whole
  uint64_t last_time_ns_ = 0;         // of the newest record held
  std::set<std::string> marks_;       // the names of the marks held
  // While the base arrives:
  std::optional<proto::BaseBegin> receiving_;
  File partial_;
  File progress_;  // how many bytes of partial_ are synced (see read_progress in store.cpp)
  uint64_t progress_entries_ = 0;
  uint64_t partial_bytes_ = 0;
  proto::ErrorCode last_error_ = proto::ErrorCode::kServer;
};

}  // namespace rwd
