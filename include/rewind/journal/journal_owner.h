// The seam between a journal directory's owner and what reads or changes its history
// from beside the write path: history/ (rebase, compaction, retention) and the
// shipper. The owner is either a served volume, whose flusher commits a change
// between two batches while writes go on, or a stopped journal, locked, that commits
// at once. Both store the manifest through Manifest::store (write a temporary, sync,
// rename, sync the directory).
#pragma once

#include <cstdint>
#include <memory>

#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/journal/journal.h"

namespace rwd {

class JournalOwner {
 public:
  virtual ~JournalOwner() = default;
  // The manifest as last stored (any thread); the plans are made on it.
  virtual std::shared_ptr<const Manifest> snapshot() const = 0;
  // Switches the journal to a prepared change (commit_change); fails, changing
  // nothing, if the journal no longer holds what the plan was made on. Sets *freed to
  // the bytes freed.
  virtual Status commit(const HistoryChange& change, uint64_t* freed) = 0;
  // How far the journal is durable: its newest record written and synced. Taken
  // before snapshot(), the snapshot lists that record's segment. A stopped journal's
  // is its newest record.
  virtual Journal::Position durable_position() const {
    const auto m = snapshot();
    if (m->segments.empty()) return {m->base_seq, 0, 0};
    const ManifestSegment& last = m->segments.back();
    return {last.sealed ? last.last_seq : last.first_seq - 1, last.first_seq, last.bytes};
  }
  // A log server holds every record up to `seq`. A shipped volume keeps it as the
  // shipped position (retention keeps the segments after it); an owner that is not
  // shipped has nothing to keep.
  virtual void note_shipped(uint64_t /*seq*/) {}
};

}  // namespace rwd
