// The seam between a journal directory's owner and what changes its history
// (history/: rebase, compaction, retention). The owner is either a served volume,
// whose flusher commits a change between two batches while writes go on, or a
// stopped journal, locked, that commits at once. Both store the manifest through
// Manifest::store (write a temporary, sync, rename, sync the directory).
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
  // Switches the journal to a prepared rebase; fails, changing nothing, if the
  // journal no longer starts with the plan's segments. Sets *freed to the bytes freed.
  virtual Status rebase(const RebasePlan& plan, uint64_t* freed) = 0;
  // Switches the journal to a prepared compaction, in the same way.
  virtual Status compact(const CompactionPlan& plan, uint64_t* freed) = 0;
};

}  // namespace rwd
