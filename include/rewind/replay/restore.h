// Materialising a view, checking a journal, and listing what changed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/replay/view.h"

namespace rwd {

class Keyring;

using Progress = std::function<void(uint64_t done, uint64_t total)>;

struct RestoreOptions {
  bool force = false;  // replace an existing OUT
  Progress progress;   // called as extents are written
};

// Writes the view to the file `out`: the base snapshot is cloned (a reflink where
// possible, else a sparse copy) to a temporary name beside OUT, each extent of the
// map is written once, the file is synced and only then renamed to OUT. On any
// error the temporary is removed and OUT is untouched. A view of a sealed base snapshot
// is written as restore_stream_to_file does.
Status restore_to_file(const JournalView& view, const std::string& out, const RestoreOptions& opts);

// The same as restore_to_file, for a view whose files are fetched as it reads them
// (ViewFetcher): the volume is read in order, each 64 MiB window fetched while the one
// before it is written out, and written to a temporary (runs of zeroes left as holes),
// synced, renamed to OUT. Nothing is cloned from the base snapshot, which is not local.
Status restore_stream_to_file(const JournalView& view, const std::string& out,
                              const RestoreOptions& opts);

// Writes the whole view into a live NBD export (nbd://, nbd+unix://) through libnbd,
// each byte once (holes and zero extents as NBD zero requests), then flushes. The
// export must be at least as large as the volume.
Status restore_to_nbd(const JournalView& view, const std::string& uri, const RestoreOptions& opts);

struct VerifyReport {
  uint64_t segments = 0, records = 0, bytes = 0;
  uint64_t first_seq = 0, last_seq = 0;
  std::vector<std::string> notes;  // things that are not errors (a rebuilt index, a torn tail)
  bool sealed = false;             // the volume is sealed (a copy shipped with ship-key=)
  bool contents_checked = true;    // false: sealed, and no keys were given
};

// Checks every checksum, seq continuity across segments, the manifest against the
// segments (and their indexes), and with `image` that the newest state equals the
// image byte for byte. Returns the first problem, naming segment, offset and seq.
// A sealed copy is checked as far as its stored bytes go; with `keys`, every sealed
// record and base chunk is opened too (which finds any change to them).
Status verify_journal(const std::string& journal_dir, const std::string& image,
                      VerifyReport* report, const Progress& progress,
                      const Keyring* keys = nullptr);

// Opens every sealed record of the journal (a sealed copy) with `keys`, and with
// `with_base` every chunk of a sealed base: the first that fails to open (changed,
// moved, of another volume, or a record in the clear where the base is sealed) is the
// error, naming segment, offset and seq, or the base chunk. A restore opens only the
// records and chunks it reads; this finds a change to any of them (a ZERO's range, a
// mark) before anything is read.
Status open_sealed_copy(const std::string& journal_dir, const Keyring& keys, bool with_base);

struct ChangedExtent {
  uint64_t offset, length;
};
// The byte ranges written, zeroed or trimmed by records with from_seq < seq <= to_seq,
// merged and in offset order.
std::vector<ChangedExtent> changed_extents(const JournalHistory& h, uint64_t from_seq,
                                           uint64_t to_seq);

}  // namespace rwd
