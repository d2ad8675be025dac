// Journal: the segments of one journal directory and the manifest that lists them.
//
// append() writes a flush batch to the open segment (rolling to a new one by size) and
// syncs it: when it returns OK every record of the batch is durable. It is write(),
// start_sync() and finish_sync(), which a streaming writer calls apart so that the
// next batch is written while the last one syncs (on the journal's sync thread,
// "rewind-jsync"). The manifest is rewritten (atomically) only when a segment is
// created or sealed and at checkpoints, never per batch. Not thread-safe: the flusher
// is its only user while serving.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "rewind/base/file.h"
#include "rewind/base/log.h"
#include "rewind/format/file_names.h"
#include "rewind/format/manifest.h"
#include "rewind/format/payload_codec.h"
#include "rewind/format/segment.h"
#include "rewind/format/segment_index.h"
#include "rewind/journal/queued_record.h"

namespace rwd {

struct JournalOptions {
  uint64_t segment_size = 256ull << 20;
  std::chrono::nanoseconds segment_age = std::chrono::minutes(10);
  // How WRITE payloads are stored (the plugin's compress=): each is encoded by the
  // writing thread, and stored as is when that does not pay. Records that come with a
  // codec already (shipped to a store) are stored as they come.
  Compression compression;
  // How many threads compress a batch (the plugin's compress-threads=): the writing
  // thread and compress_threads - 1 of the journal's own ("rewind-zstd"), which wake
  // only for batches with at least kParallelEncodeBytes to compress.
  unsigned compress_threads = 1;
};
inline constexpr uint64_t kParallelEncodeBytes = 256u << 10;

// A rebase decided and prepared: the new base snapshot `new_base_file` (written and
// synced) holds every record up to new_base_seq, and replaces the base at
// old_base_seq and the segments `folded` (the oldest ones, all sealed).
struct RebasePlan {
  uint64_t old_base_seq = 0;
  std::vector<std::string> folded;
  std::string new_base_file;
  uint64_t new_base_seq = 0, new_base_time_ns = 0;
};

// How many leading segments of `m` are sealed and end at or before `seq`.
size_t segments_ending_by(const Manifest& m, uint64_t seq);

// A compaction prepared (prepare_compaction in compact.h): each segment named in
// `replaced` is to be replaced by the one in `written` at the same index, a rewrite
// already written and synced under a new name (or the same segment, only relabelled
// with the granularity, when compaction had nothing to change in it).
struct CompactionPlan {
  uint64_t granularity_ns = 0;
  std::vector<ManifestSegment> replaced;
  std::vector<ManifestSegment> written;
};

// A change to a journal's history, prepared while writes go on (history/) and made in
// one switch of the manifest: a rebase or a compaction.
using HistoryChange = std::variant<RebasePlan, CompactionPlan>;

// The switch and the clean-up of `change`, on the journal in `dir` whose manifest is
// `m` (docs/FORMAT.md, "Rebase" steps 2 and 3, and "Compaction"):
// - a rebase stores `m` with the new base, without the folded segments and without
//   the marks before the new base, then removes the old base and the folded segments
//   and their indexes; it fails, changing nothing, unless `m` starts with the plan's
//   segments at the plan's base;
// - a compaction stores `m` with the plan's segments replaced, then removes the
//   replaced files and their indexes; it fails, changing nothing, unless `m` still
//   lists every replaced segment as it was.
// Returns the new manifest; *freed gets the disk space given back. A file that cannot
// be removed is a leftover for the next start or rebase, not an error.
Result<Manifest> commit_change(const std::string& dir, const Manifest& m,
                               const HistoryChange& change, uint64_t* freed);

class Journal {
 public:
  // `manifest` was loaded from (or just created in) `dir`; it must not list an open
  // segment (recovery seals it first).
  Journal(std::string dir, Manifest manifest, JournalOptions opts, Logger logger);
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Appends the records (consecutive seqs, continuing the journal) and syncs them.
  // After a failure, call recover() before anything else: which of the records
  // became durable is then last_seq().
  Status append(std::span<const QueuedRecord> batch);
  // Writes the records (consecutive seqs, continuing what was written) without
  // syncing them, but for segments that fill up, which are sealed and so synced
  // (after the sync in flight, if any). It may run while a sync is in flight. After
  // a failure, recover().
  Status write(std::span<const QueuedRecord> batch);
  // Starts syncing everything written so far, on the sync thread, which calls `done`
  // (if set) when the sync ends; finish_sync() first if a sync was started before.
  void start_sync(std::function<void()> done = {});
  // Whether finish_sync() would return at once.
  bool sync_done() const;
  // Waits for the sync start_sync() started (none: OK at once). On OK, every record
  // written before start_sync() is durable: durable_seq(). On failure, recover().
  Status finish_sync();
  // The last record known durable (a completed sync), or the base.
  uint64_t durable_seq() const;
  // After a failed append, seal or segment creation: seals the open segment at the
  // end of its last successful sync, so that nothing written after it (and perhaps
  // not on disk) is ever read as a record, and the next append starts a new segment.
  // The failed sync is never retried: that would report data the kernel may already
  // have dropped as durable. Safe to call again if it fails.
  Status recover();
  // Seals the open segment if it is older than segment-age.
  Status seal_if_old(uint64_t now_ns);
  // Seals the open segment, if any.
  Status seal();
  // Records in the manifest that the image holds every record up to `seq` (the
  // caller synced the image first).
  Status checkpoint(uint64_t seq);
  // Sets the shipped position (Manifest::shipped_seq; std::nullopt: not shipped), stored
  // with the next change of the manifest or checkpoint().
  void set_shipped(std::optional<uint64_t> seq);
  // Where the durable records end: in the segment starting at `segment_first_seq`, at
  // byte `offset` (any thread).
  struct Position {
    uint64_t seq = 0;
    uint64_t segment_first_seq = 0;
    uint64_t offset = 0;
  };
  Position durable_position() const;
  // True once since the last call if a segment was sealed (a good moment to checkpoint).
  bool take_sealed_flag() {
    bool f = sealed_since_checked_;
    sealed_since_checked_ = false;
    return f;
  }

  // Commits a prepared change (commit_change) to this journal's manifest.
  Status commit(const HistoryChange& change, uint64_t* freed);

  const Manifest& manifest() const { return manifest_; }
  // A copy of the manifest as last stored, for other threads.
  std::shared_ptr<const Manifest> snapshot() const;
  const std::string& dir() const { return dir_; }
  // The last durable record (after a failure: once recover() succeeded).
  uint64_t last_seq() const;

 private:
  Status open_segment(uint64_t first_seq, uint64_t now_ns);
  void set_manifest(Manifest next);
  Status seal_open(bool store_manifest);
  // Fills stored_ with the batch as it is to be stored, encoding what compression says
  // (on the compression threads, for a large batch).
  void encode(std::span<const QueuedRecord> batch);
  // Encodes record k of the batch, whose stored_[k] holds it as it came.
  void encode_one(PayloadEncoder& encoder, size_t k);

  std::string dir_;
  Manifest manifest_;
  JournalOptions opts_;
  Logger logger_;
  std::optional<SegmentWriter> writer_;  // the open segment, if any
  uint64_t open_created_ns_ = 0;
  ManifestSegment open_stats_;            // records, seq and time range of the open segment
  std::vector<ManifestMark> open_marks_;  // marks in the open segment
  std::vector<IndexEntry> open_entries_;  // the open segment's index, written when sealed
  std::vector<uint64_t> open_sums_;       // and its chunk checksums
  // The open segment as of its last successful sync: where recover() cuts it.
  struct Synced {
    uint64_t end = 0;
    ManifestSegment stats;
    size_t marks = 0, entries = 0, sums = 0;
  } synced_;
  bool sealed_since_checked_ = false;
  bool unstored_ = false;               // manifest_ has changes not yet stored (set_shipped)
  std::vector<EncodedHeader> headers_;  // reused between appends
  std::vector<RecordRef> refs_;
  // write()'s batch as it is stored: each record's header and stored payload, and the
  // buffers of the payloads it encoded (reused between appends).
  struct Stored {
    RecordHeader header;
    std::span<const uint8_t> payload;
    const uint8_t* chunk_sums = nullptr;  // precomputed for the decoded payload
    // What chunk checksums are computed over; none for a record that came encoded,
    // whose decoded bytes are not at hand.
    std::optional<std::span<const uint8_t>> decoded;
  };
  std::vector<Stored> stored_;
  std::vector<std::vector<uint8_t>> encoded_;
  std::vector<size_t> to_encode_;  // the records of the batch worth encoding
  // With compression on: one encoder per compression thread, the writing thread's
  // first, and the threads besides it.
  std::vector<std::unique_ptr<PayloadEncoder>> encoders_;
  std::vector<std::unique_ptr<BackgroundTask>> encode_threads_;
  mutable std::mutex snapshot_mu_;  // guards snapshot_
  std::shared_ptr<const Manifest> snapshot_;
  Position durable_;  // guarded by snapshot_mu_; changed only by the writing thread
  // The sync started and not yet finished: what it makes durable. `synced` is empty
  // when everything written was in sealed segments, with nothing to sync.
  struct Pending {
    std::optional<Synced> synced;
    Position position;
  };
  std::optional<Pending> pending_;
  // Last, so that it ends (waiting for a sync in flight) before the segment's file closes.
  BackgroundTask sync_task_{"rewind-jsync"};
};

}  // namespace rwd
