// Volume: one served disk, its image file plus its journal directory.
//
// The write path of the durability contract (docs/DURABILITY.md):
//   write/zero/trim -> stamped and queued (acknowledged; visible to reads at once)
//   flusher thread  -> appends the queue to the open segment, syncs it (durable), then
//                      applies it to the image in offset order (journal before image)
//   flush / FUA     -> returns once everything acknowledged before it is durable
//   checkpoint      -> image synced, then the manifest records how far it is current
// While writes stream in, the apply thread writes batch N into the image while the
// flusher journals batch N+1, and a checkpoint's image sync runs on a thread of its
// own; when the stream pauses, the flusher waits for each apply.
// open() redoes the journal after the last checkpoint, so after any crash
// image == replay(base, journal).
//
// A journal or image error (a full disk, EIO) does not stop the volume: from then
// on writes, flushes and marks fail with that error while reads go on; the flusher
// keeps what it could not write and tries again every retry-interval. A failed sync
// is never retried on the same data: the journal starts a new segment after the last
// successful sync, and the image is redone from the journal since its last
// checkpoint. Once that works, writes are accepted again.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "rewind/base/file.h"
#include "rewind/base/log.h"
#include "rewind/base/metrics.h"
#include "rewind/journal/journal.h"
#include "rewind/journal/journal_dir.h"
#include "rewind/journal/journal_owner.h"
#include "rewind/volume/write_queue.h"

namespace rwd {

struct VolumeOptions {
  std::string image_path;   // absolute
  std::string journal_dir;  // absolute
  uint64_t queue_max = 64ull << 20;
  std::chrono::nanoseconds flush_interval = std::chrono::milliseconds(100);
  std::chrono::nanoseconds checkpoint_interval = std::chrono::seconds(30);
  // A sealed segment asks for a checkpoint too (start-up then redoes less, retention
  // may fold it), but at most one per this interval: at full speed segments seal
  // several times a second, and every checkpoint writes the image's dirty pages back.
  std::chrono::nanoseconds seal_checkpoint_spacing = std::chrono::seconds(5);
  // At open, read every record of every sealed segment and verify its checksums
  // (about the time it takes to read the journal); otherwise only headers, sizes and
  // seq continuity are checked, and `rewind verify` is left to find damaged records.
  bool full_check = true;
  // Supersede queued writes that newer ones cover whole (WriteQueue::set_coalesce).
  bool coalesce = false;
  // After a journal or image error, how often the flusher tries again.
  std::chrono::nanoseconds retry_interval = std::chrono::seconds(1);
  JournalOptions journal;
  // The volume is shipped to a log server: the manifest keeps the shipped position
  // (note_shipped), and retention the segments after it. Off: the position is dropped.
  bool shipped = false;
  // Where records' times come from (empty: the wall clock). For tests that need times
  // of their choosing.
  WriteQueue::Clock clock;
};

// What the volume counts as it serves, for metrics= (docs/METRICS.md). Requests are
// counted once accepted (a refused one is not); bytes are the bytes asked for.
struct VolumeCounters {
  Counter writes, write_bytes, zeroes, zero_bytes, trims, trim_bytes, reads, read_bytes;
  Counter flushes;  // FLUSH requests (a FUA request is counted as what it is)
  // A FLUSH's or FUA request's wait for durability.
  DurationHistogram flush_seconds;
  // Each failed journal or image write, sync or checkpoint (docs/DURABILITY.md), the
  // retries while it lasts included.
  Counter journal_errors, image_errors;
};

class Volume : public JournalOwner {
 public:
  // Opens a volume for serving. Creates the journal on first use; checks that the
  // journal belongs to the image; after an unclean stop seals the open segment
  // (discarding a torn tail) and redoes the records after the last checkpoint.
  static Result<std::unique_ptr<Volume>> open(const VolumeOptions& opts, Logger logger);
  Volume(const Volume&) = delete;
  Volume& operator=(const Volume&) = delete;
  ~Volume();

  // Starts the flusher thread. Until then records queue up (and close() drains them).
  void start();

  Status write(std::span<const uint8_t> data, uint64_t offset, bool fua);
  Status zero(uint64_t offset, uint64_t length, bool fua);
  Status trim(uint64_t offset, uint64_t length, bool fua);
  Status flush();

  // Inserts a MARK record after everything acknowledged before it and returns once it
  // is durable, with its seq and time. Names are unique per volume.
  struct MarkStamp {
    uint64_t seq, time_ns;
  };
  Result<MarkStamp> mark(const std::string& name);

  // A group mark (`rewind mark --with`, docs/CONTROL.md): one cut across volumes.
  // hold() makes new writes, zeroes and trims wait before they take a seq, for at most
  // `max` (then the hold lapses by itself), and reserves `name` for the group's mark;
  // `token` names the hold. While every volume of the group holds, each queues its
  // mark (queue_group_mark, refused unless this hold is still in place), then each is
  // released. Writes acknowledged before the hold are before the mark; a write that
  // waited is after it.
  Status hold(uint64_t token, std::chrono::milliseconds max, const std::string& name);
  Result<MarkStamp> queue_group_mark(uint64_t token, const MarkPayload& mark);
  // Ends the hold `token`; an error if it had lapsed (or another hold replaced it).
  Status release(uint64_t token);
  // Returns once every record up to `seq` is durable.
  Status wait_durable(uint64_t seq) { return queue_->wait_durable(seq); }

  Status read(std::span<uint8_t> buf, uint64_t offset) const;

  // What [offset, offset+length) holds, as runs in offset order: data, zeroes that
  // take space, or a hole (reads as zeroes). Queued records count as written.
  enum class ExtentKind { kData, kZero, kHole };
  Status extents(uint64_t offset, uint64_t length,
                 const std::function<void(uint64_t start, uint64_t end, ExtentKind)>& f) const;

  // Switches the journal to a prepared rebase or compaction (prepared on a
  // snapshot()), between two batches of the flusher, and returns once that is done;
  // writes go on meanwhile. After a rebase, marks before the new base are forgotten.
  // Fails, changing nothing, if the journal no longer holds what the plan was made on,
  // or the volume is closing.
  Status commit(const HistoryChange& change, uint64_t* freed) override;
  // The manifest as last stored (any thread).
  std::shared_ptr<const Manifest> snapshot() const override { return journal_->snapshot(); }

  // The log server holds every record up to `seq` (any thread). Stored in the manifest
  // at the next checkpoint.
  void note_shipped(uint64_t seq) override;
  uint64_t shipped_seq() const { return shipped_seq_.load(); }
  // Where the durable records end (any thread).
  Journal::Position durable_position() const override { return journal_->durable_position(); }

  // Drains the queue, syncs, seals the open segment and checkpoints the image.
  Status close();

  uint64_t size() const { return size_; }
  const WriteQueue& queue() const { return *queue_; }
  const VolumeCounters& counters() const { return counters_; }
  const VolumeOptions& options() const { return opts_; }
  const Manifest& manifest() const { return journal_->manifest(); }

 private:
  Volume() = default;
  Status push(RecordHeader h, Payload payload, bool fua, bool chunk_sums_follow = false);
  // Waits until every record up to `seq` (0: every one acknowledged) is durable, timed
  // into counters_.flush_seconds.
  Status wait_flushed(uint64_t seq);
  // Waits while a hold is in place (hold()); ends one that lapsed.
  void wait_unheld();
  // Queues a MARK record with this payload (marks_mu_ held by the caller).
  Result<MarkStamp> queue_mark(const MarkPayload& mark);
  Status check_range(const char* what, uint64_t offset, uint64_t length) const;
  void flusher_loop();
  // Journals, then applies (apply_held), what the flusher holds; false after a failure.
  // While streaming, the records are written and their sync is started, to be
  // collected by a later call as the next batch is written; otherwise they are
  // durable when it returns.
  bool write_held(bool streaming);
  // Moves the records up to `durable` (what the journal's last completed sync, or its
  // recovery, made durable) from unjournaled_ to unapplied_, and tells the queue.
  void collect_durable(uint64_t durable);
  // Applies unapplied_ to the image on the apply thread; while streaming it is
  // collected by a later call, otherwise waited for here. False after a failure.
  bool apply_held(bool streaming);
  // Waits for the apply thread's batch; on failure it goes back to unapplied_.
  Status finish_apply();
  Status apply_batch(std::span<const QueuedRecord> batch);
  // Syncs the image and stores the checkpoint, waiting for both.
  Status checkpoint();
  // Starts a checkpoint if one is due (a segment was sealed, or checkpoint-interval
  // passed) and none is running, and collects one that ended.
  void maybe_checkpoint(uint64_t now_ns);
  // Waits for the running checkpoint's image sync, then stores the checkpoint.
  Status finish_checkpoint();
  // Stores in the manifest that the image holds every record up to `seq` (the image
  // was synced after they were applied), with the shipped position.
  Status store_checkpoint(uint64_t seq);
  // How long the flusher may wait for records before it has other work.
  std::chrono::nanoseconds next_wait() const;
  enum class Part { kJournal, kImage };
  void fail(Part part, const char* what, const Status& st);
  // Tries to undo a failure (see the class comment); true once writes may go on.
  bool recover();

  VolumeOptions opts_;
  Logger logger_;
  File lock_;
  File image_;
  uint64_t size_ = 0;
  std::unique_ptr<Journal> journal_;  // used by the flusher only (or close() once it stopped)
  std::unique_ptr<WriteQueue> queue_;
  std::thread flusher_;
  uint64_t applied_seq_ = 0;         // flusher only
  uint64_t last_checkpoint_ns_ = 0;  // flusher only
  bool sealed_ = false;              // flusher only: a segment was sealed since
  // Flusher only: the journal's last seq when sealed_ was set. The checkpoint a seal
  // asks for waits until the image has everything up to it, so that it covers the
  // sealed segment whole even when the apply thread is behind.
  uint64_t sealed_seq_ = 0;
  // The applied seq a running image sync makes a checkpoint of (flusher only).
  std::optional<uint64_t> checkpointing_;
  BackgroundTask image_sync_{"rewind-isync", /*batch=*/true};
  std::vector<QueuedRecord> unjournaled_;  // flusher only: taken, not yet durable
  size_t written_ = 0;  // flusher only: how many of unjournaled_ the journal has written
  std::vector<QueuedRecord> unapplied_;  // flusher only: durable, not yet in the image
  std::vector<QueuedRecord> applying_;   // the apply thread's, while apply_task_ runs it
  bool apply_running_ = false;           // flusher only
  BackgroundTask apply_task_{"rewind-apply", /*batch=*/true};
  bool journal_failed_ = false;   // flusher only
  bool image_failed_ = false;     // flusher only
  uint64_t failed_since_ns_ = 0;  // flusher only
  // A change for the flusher to commit (Volume::commit), and its outcome.
  struct ChangeRequest {
    const HistoryChange* change = nullptr;
    uint64_t* freed = nullptr;
    bool done = false;
    Status status;
  };
  void commit_change_request();  // flusher only
  std::mutex change_mu_;         // guards change_req_ and closing_
  std::condition_variable change_cv_;
  ChangeRequest* change_req_ = nullptr;
  bool closing_ = false;
  std::mutex marks_mu_;                    // guards marks_, and serialises mark()
  std::map<std::string, uint64_t> marks_;  // every mark of the volume: name -> seq
  // The hold of a group mark: writes check held_ and wait on hold_cv_ while hold_token_
  // is set and hold_until_ has not passed.
  std::atomic<bool> held_{false};
  std::mutex hold_mu_;
  std::condition_variable hold_cv_;
  uint64_t hold_token_ = 0;  // 0: no hold
  std::chrono::steady_clock::time_point hold_until_;
  std::string hold_name_;  // the name the hold reserves
  std::atomic<uint64_t> shipped_seq_{0};
  mutable VolumeCounters counters_;
  bool closed_ = false;
  Status close_status_;
};

}  // namespace rwd
