// A reader that follows a journal's records in seq order as they become durable,
// from the sealed segments and the open one, while the volume keeps writing: the
// shipper's source of what to send. It never reads past the durable position it is
// given, so a record it returns is whole and checked.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rewind/base/file.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"
#include "rewind/format/record.h"
#include "rewind/journal/journal.h"

namespace rwd {

// The segment of `m` that holds (or, if not written yet, will hold) record `seq`:
// its index, or -1 if `seq` is at or before the base.
long segment_for(const Manifest& m, uint64_t seq);

// The journal bytes from `from` (a segment's first seq and an offset in it, as
// JournalTail::position() gives; {0, 0} for the start of record after_seq + 1) to
// `durable`: what a reader at `from` has yet to read.
uint64_t bytes_to_durable(const Manifest& m, std::pair<uint64_t, uint64_t> from, uint64_t after_seq,
                          const Journal::Position& durable);

class JournalTail {
 public:
  explicit JournalTail(std::string journal_dir) : dir_(std::move(journal_dir)) {}

  // The next record read will be `seq` + 1.
  void seek(uint64_t seq);
  uint64_t next_seq() const { return next_seq_; }
  // Where the records read end: the segment's first seq and the byte offset.
  std::pair<uint64_t, uint64_t> position() const { return {segment_first_, pos_}; }

  // Reads record next_seq() into *h and *payload if it is durable (its seq at most
  // `durable`) and advances; false if it is not durable yet. `m` is a manifest taken
  // after `durable` was: it names the segment that holds the record. A record that
  // was folded into the base, or whose bytes do not match their checksum, is an
  // error.
  Result<bool> next(const Manifest& m, uint64_t durable, RecordHeader* h,
                    std::vector<uint8_t>* payload);

 private:
  Status open_for(const Manifest& m);

  std::string dir_;
  uint64_t next_seq_ = 0;
  File file_;
  uint64_t segment_first_ = 0;
  uint64_t pos_ = 0;
};

}  // namespace rwd
