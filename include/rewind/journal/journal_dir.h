// A journal directory's life cycle (docs/FORMAT.md, "A journal directory"): creating
// it with its base snapshot, locking it, checking that it belongs to its image,
// sealing what an unclean stop left open and removing what an interrupted change left
// behind. What a live volume (volume/) and a log server's store (ship/) open.
#pragma once

#include <cstdint>
#include <string>

#include "rewind/base/file.h"
#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/format/manifest.h"

namespace rwd {

// Checks an image file for use as a volume: a regular file whose size is a
// non-zero multiple of 512. Returns its size.
Result<uint64_t> check_image(const std::string& image_path);

// Creates the journal directory of a new volume for `image_path`: base snapshot
// (reflink where possible, else a sparse copy), then the manifest. `journal_dir`
// must not exist or be empty.
Status create_journal(const std::string& image_path, const std::string& journal_dir,
                      const Logger& logger);

// Seals the segment an unclean stop left open in `*m` (stored in `dir`): keeps every
// whole record, cuts off a torn tail (never acknowledged as flushed), drops the
// segment if it holds nothing; then stores the manifest.
Status seal_open_segment(Manifest* m, const std::string& dir, const Logger& logger);

// An exclusive lock on a journal directory (flock on <dir>/LOCK), so that two
// servers never write one journal.
Result<File> lock_journal(const std::string& journal_dir);

// Removes what an interrupted change of the journal left: segment files created but
// never listed, segments and indexes a rebase folded into the base, base snapshots
// the manifest does not name, temporaries. Says what it removes; warns of (and keeps)
// anything else it does not know. The caller holds the lock.
Status remove_leftovers(const Manifest& m, const std::string& journal_dir, const Logger& logger);

// A journal directory opened for writing: locked, its manifest loaded, its image
// checked against it, its sealed segments checked (every record with `full_check`,
// else headers, sizes and seq continuity), the segment an unclean stop left open
// sealed, leftovers removed. The lock is held while `lock` lives.
struct OpenedJournal {
  File lock;
  Manifest manifest;
  uint64_t image_size = 0;
};

// Opens the journal directory `dir` of the image `image_path` as above, creating it
// (base snapshot, manifest) when it does not exist or is empty. A directory that is
// not a journal is refused before anything is created in it; a damaged manifest or
// segment is kCorruption, and nothing is changed then.
Result<OpenedJournal> open_journal_dir(const std::string& image_path, const std::string& dir,
                                       bool full_check, const Logger& logger);

}  // namespace rwd
