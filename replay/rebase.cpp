#include "rewind/rebase.h"

#include <sys/stat.h>

#include <memory>

#include <fmt/format.h>

#include "rewind/file.h"
#include "rewind/format.h"
#include "rewind/inspect.h"
#include "rewind/journal.h"
#include "rewind/restore.h"
#include "rewind/segment_index.h"
#include "rewind/view.h"
#include "rewind/volume.h"

namespace rwd {

namespace {

// The space a file takes on disk (a sparse base snapshot takes less than its size).
uint64_t disk_bytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

// Removes `path` if it exists; the caller syncs the directory.
Status remove_file(const std::string& path) {
  if (file_system().unlink(path.c_str()) != 0 && errno != ENOENT)
    return Status::io_error(fmt::format("cannot remove {}", path), errno);
  return Status::ok();
}

}  // namespace

Result<RebaseResult> rebase(const std::string& journal_dir, const Target& before,
                            const Logger& logger) {
  auto lock = lock_journal(journal_dir);
  if (!lock) {
    if (lock.status().code() == Status::Code::kBusy)
      return Status::busy(fmt::format(
          "journal {} is in use (is the plugin serving it?); stop the server first, or let "
          "the plugin apply its retention policy itself",
          journal_dir));
    return lock.status();
  }
  // What an interrupted rebase left behind goes first, so that it never piles up.
  {
    auto m = Manifest::load(journal_dir);
    if (!m) return m.status();
    REWIND_RETURN_IF_ERROR(remove_leftovers(*m, journal_dir, logger));
  }
  auto loaded = JournalHistory::load(journal_dir, true, logger);
  if (!loaded) return loaded.status();
  auto history = std::make_shared<const JournalHistory>(std::move(*loaded));
  const Manifest& m = history->manifest();

  RebaseResult r;
  r.old_base_seq = r.new_base_seq = m.base_seq;
  r.new_base_time_ns = m.base_time_ns;

  // The last seq to fold, before rounding down to a segment boundary.
  uint64_t want = m.base_seq;
  if (before.kind == Target::Kind::kTime && before.time_ns < history->first_time_ns()) {
    want = m.base_seq;  // nothing that old is left
  } else {
    std::string note;
    auto seq = history->resolve(before, &note);
    if (!seq) return seq.status();
    want = *seq;
  }
  if (want > m.checkpoint_seq) {
    r.note = fmt::format(
        "the image is current to seq {} only (the server stopped uncleanly and has not been "
        "started since); the records after it stay in the journal for start-up to redo",
        m.checkpoint_seq);
    want = m.checkpoint_seq;
  }
  size_t folded = 0;
  while (folded < m.segments.size() && m.segments[folded].sealed &&
         m.segments[folded].last_seq <= want)
    ++folded;
  if (folded == 0) {
    if (r.note.empty())
      r.note =
          m.segments.empty() || !m.segments[0].sealed
              ? fmt::format("nothing to fold: no sealed segment ends at or before seq {}", want)
              : fmt::format(
                    "nothing to fold: the oldest segment, {}, runs to seq {} ({}), after "
                    "the target; rebase folds whole segments",
                    m.segments[0].file, m.segments[0].last_seq,
                    format_time(m.segments[0].last_time_ns));
    return r;
  }
  const ManifestSegment& last_folded = m.segments[folded - 1];
  r.new_base_seq = last_folded.last_seq;
  r.new_base_time_ns = last_folded.last_time_ns;

  // 1. The new base snapshot, written under a temporary name, synced, renamed into
  //    place and its directory synced (restore_to_file does all of that). The old manifest does not
  //    list it: a crash from here to step 2 leaves the old volume whole, and the new file over.
  const std::string new_base = fmt::format("{:020}.img", r.new_base_seq);
  {
    auto view = JournalView::open(history, r.new_base_seq);
    if (!view) return view.status();
    RestoreOptions ro;
    ro.force = true;  // a file of this name can only be what an interrupted rebase left
    REWIND_RETURN_IF_ERROR(restore_to_file(**view, base_path(journal_dir, new_base), ro));
  }

  // 2. The switch: one atomic replacement of the manifest.
  Manifest next = m;
  next.base_file = new_base;
  next.base_seq = r.new_base_seq;
  next.base_time_ns = r.new_base_time_ns;
  next.segments.erase(next.segments.begin(), next.segments.begin() + static_cast<long>(folded));
  // A mark at the new base keeps its name (the base is its state); older ones go.
  std::erase_if(next.marks, [&](const ManifestMark& mk) { return mk.seq < r.new_base_seq; });
  for (const MarkInfo& mk : history->marks())
    if (mk.seq < r.new_base_seq) r.marks_given.push_back(mk.name);
  REWIND_RETURN_IF_ERROR(next.store(journal_dir));

  // 3. Only now the files the new manifest no longer needs.
  std::vector<std::string> gone{base_path(journal_dir, m.base_file)};
  for (size_t i = 0; i < folded; ++i) {
    gone.push_back(segment_path(journal_dir, m.segments[i].file));
    gone.push_back(segment_path(journal_dir, index_file_name(m.segments[i].file)));
  }
  for (const std::string& path : gone) {
    r.bytes_freed += disk_bytes(path);
    REWIND_RETURN_IF_ERROR(remove_file(path));
  }
  r.segments_removed = folded;
  REWIND_RETURN_IF_ERROR(sync_dir(join_path(journal_dir, format::kSegmentDir)));
  REWIND_RETURN_IF_ERROR(sync_dir(join_path(journal_dir, format::kBaseDir)));
  log_to(logger, LogLevel::kInfo,
         fmt::format(
             "rebased {}: the base is now seq {} ({}); removed {} segments and the old "
             "base ({} bytes); marks given up: {}",
             journal_dir, r.new_base_seq, format_time(r.new_base_time_ns), folded, r.bytes_freed,
             r.marks_given.empty() ? "none" : fmt::to_string(fmt::join(r.marks_given, ", "))));
  return r;
}

}  // namespace rwd
