// WriteQueue: where an accepted request waits until the flusher has journaled it and
// applied it to the image.
//
// push() stamps a record with the next seq and the wall-clock time under one lock and
// makes it visible to reads at once through the overlay, so an acknowledged write is
// seen on every connection before it reaches the image. The queue is bounded: push()
// waits while more than `queue_max` bytes are queued. The flusher take()s pending
// records in seq order, reports them durable, then applied; only then do they free
// queue space and leave the overlay.
//
// The overlay is a list of generations, each the extent map of about one batch of
// consecutive records (newest wins within it, and a newer generation over an older
// one), its nodes taken from an arena of its own. A push inserts into the newest
// generation without calling malloc; once every record of the oldest generation is
// in the image, it is dropped whole, outside the lock, instead of record by record.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <span>
#include <vector>

#include "rewind/base/clock.h"
#include "rewind/base/extent_map.h"
#include "rewind/base/metrics.h"
#include "rewind/base/status.h"
#include "rewind/format/record.h"
#include "rewind/journal/queued_record.h"

namespace rwd {

// Where the newest queued bytes of a range are: `data` + `data_offset`, or zeroes.
struct OverlayValue {
  uint64_t seq = 0;
  Payload data;  // null: the range reads as zeroes (ZERO or TRIM)
  uint64_t data_offset = 0;
  OverlayValue advanced(uint64_t n) const { return {seq, data, data ? data_offset + n : 0}; }
};

class WriteQueue {
 public:
  using Clock = std::function<uint64_t()>;  // nanoseconds since the Unix epoch

  // `next_seq` and `last_time_ns` continue the journal's history.
  WriteQueue(uint64_t queue_max, uint64_t next_seq, uint64_t last_time_ns, Clock clock = {});
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  // With coalescing on, push() turns a queued WRITE or ZERO that the new WRITE or ZERO
  // covers whole into a superseded record (format::kFlagSuperseded: no data, the seq
  // of the new record as payload), as long as neither the flusher has taken it nor a
  // FLUSH, FUA or mark has asked for it or anything after it to be durable. Off by
  // default: it gives up the points in time between flush points. Set before use.
  void set_coalesce(bool on) { coalesce_ = on; }
  struct Coalesced {
    uint64_t records = 0, bytes = 0;  // superseded so far, and the bytes they would have written
  };
  Coalesced coalesced() const;

  // Stamps and queues a record, waiting while the queue is full. For WRITE and MARK
  // `payload` holds payload_length bytes and its checksum must be set in `h`; the
  // other fields of `h` except seq and time_ns must be set. Returns the seq (and the time stamped
  // on it through `time_ns`, if given).
  Result<uint64_t> push(RecordHeader h, Payload payload, uint64_t* time_ns = nullptr,
                        bool chunk_sums_follow = false);

  // Reads [offset, offset+buf.size()): calls read_base(buf) for what is under the
  // queue (the image), then lays every queued byte of the range over it.
  Status read(std::span<uint8_t> buf, uint64_t offset,
              const std::function<Status(std::span<uint8_t>)>& read_base) const;

  // The queued ranges overlapping [offset, offset+length), and whether each reads as
  // zeroes: oldest first, a later range winning where two overlap.
  struct QueuedRange {
    uint64_t start, end;
    bool zero;
  };
  std::vector<QueuedRange> queued_ranges(uint64_t offset, uint64_t length) const;

  // Waits until every record pushed before this call is durable; asks the flusher to
  // run now. The record waited for, if still queued, gets format::kFlagFlushPoint.
  // With coalescing, nothing up to it is superseded from then on, and a record
  // superseded before counts as durable once the record that covered it is.
  // Fails with the error while the volume is failing (see fail()).
  Status wait_durable();
  Status wait_durable(uint64_t seq);

  // ---- For the flusher ----
  // Makes the flusher's take() return at once, with whatever is pending (perhaps
  // nothing): work besides records waits for it (a rebase or compaction to commit).
  void wake();
  // The journal's sync in flight ended: take() returns at once, with nothing unless a
  // batch is due anyway, so that the flusher collects the sync (its records become
  // durable, for flushes, the image and the shipper) instead of waiting out its
  // interval.
  void note_synced();
  // Waits up to `max_wait` for pending records (returning early when a flush is
  // requested, `batch_bytes` are pending, a writer waits for space, wake() or stop()
  // was called), then moves the oldest pending records, about `batch_bytes` of them (at
  // least one), to *out (cleared first). Smaller batches let writers fill the queue
  // while the flusher writes. Returns false once stopped and drained. After
  // note_synced() it may return early with nothing (see there).
  bool take(std::chrono::nanoseconds max_wait, uint64_t batch_bytes,
            std::vector<QueuedRecord>* out);
  void mark_durable(uint64_t seq);
  // The records (a batch from take(), already durable) are in the image: drop them
  // from the overlay and free their queue space.
  void mark_applied(std::span<const QueuedRecord> records);
  // Makes every push and wait_durable fail with `st` until clear_error(); records
  // already queued stay queued, and visible to reads.
  void fail(const Status& st);
  void clear_error();
  void stop();
  // Waits up to `d` for stop(); returns whether it was called.
  bool wait_stop(std::chrono::nanoseconds d);

  uint64_t last_seq() const;
  uint64_t durable_seq() const;
  // The highest seq a FLUSH, FUA write or mark has waited for.
  uint64_t flush_wanted() const;
  uint64_t queued_bytes() const;
  uint64_t queue_max() const { return queue_max_; }
  Status error() const;
  // Back-pressure: pushes that waited for room, and their waits' total in nanoseconds.
  uint64_t space_waits() const { return space_waits_.value(); }
  uint64_t space_wait_ns() const { return space_wait_ns_.value(); }

  static uint64_t cost(const RecordHeader& h);

 private:
  // Supersedes the pending records `h` (stamped, not yet queued) covers whole.
  void coalesce_locked(const RecordHeader& h);
  Status wait_durable_locked(std::unique_lock<std::mutex>& lk, uint64_t seq);

  bool coalesce_ = false;
  Counter space_waits_, space_wait_ns_;
  mutable std::mutex mu_;               // guards every member below
  std::condition_variable space_cv_;    // queue space freed, or failed
  std::condition_variable work_cv_;     // records pending, flush requested, or stop
  std::condition_variable durable_cv_;  // durable_seq_ advanced, or failed
  const uint64_t queue_max_;
  Clock clock_;
  uint64_t next_seq_;
  uint64_t last_time_ns_;
  uint64_t durable_seq_;
  uint64_t bytes_ = 0;               // cost of every record not yet applied
  uint64_t pending_bytes_ = 0;       // cost of records not yet taken
  uint64_t batch_bytes_ = 1u << 20;  // take()'s batch_bytes: a push reaching it wakes take()
  int space_waiters_ = 0;            // writers waiting for queue space
  uint64_t flush_wanted_ = 0;        // highest seq a waiter wants durable
  uint64_t no_coalesce_ = 0;         // records up to this seq are never superseded
  std::map<uint64_t, uint64_t> superseded_;  // superseded seq -> its cover, until that is durable
  Coalesced coalesced_;
  bool stopping_ = false;
  bool woken_ = false;   // wake() was called since the last take()
  bool synced_ = false;  // note_synced() was called since the last take()
  Status error_;
  std::deque<QueuedRecord> pending_;  // consecutive seqs

  // Consecutive records of the overlay, up to last_seq, newest wins. A generation takes
  // records until it holds batch_bytes_ or the flusher takes from the queue, so its
  // records usually leave together.
  struct Generation {
    Generation();
    std::pmr::monotonic_buffer_resource arena;
    PmrExtentMap<OverlayValue> map;
    uint64_t last_seq = 0;
    uint64_t bytes = 0;  // cost of its records, when pushed
    bool closed = false;
  };
  Generation& open_generation_locked(uint64_t seq, uint64_t cost);
  std::deque<std::unique_ptr<Generation>> overlay_;  // oldest first
};

}  // namespace rwd
