#include "rewind/history/rebase.h"

#include <memory>

#include <fmt/format.h>

#include "rewind/base/file.h"
#include "rewind/format/format.h"
#include "rewind/format/segment_index.h"
#include "rewind/journal/journal.h"
#include "rewind/journal/journal_dir.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/restore.h"
#include "rewind/replay/view.h"

namespace rwd {

Result<RebasePlan> prepare_rebase(const std::string& journal_dir, const Manifest& m, size_t folded,
                                  const Logger& logger) {
  if (folded == 0 || folded > m.segments.size() || !m.segments[folded - 1].sealed ||
      m.segments[folded - 1].last_seq > m.checkpoint_seq)
    return Status::invalid(fmt::format("cannot fold {} segments of {}", folded, journal_dir));
  RebasePlan plan;
  plan.old_base_seq = m.base_seq;
  Manifest upto = m;
  upto.segments.resize(folded);
  auto loaded = JournalHistory::load(journal_dir, std::move(upto), true, logger);
  if (!loaded) return loaded.status();
  // A base is an exact state: no segment end is folded to where writes were coalesced
  // or compacted up to a later flush point, since the base would then lack bytes that
  // only later records hold.
  // (The newest state is exact: the journal's end, if every segment is folded.)
  while (folded > 0 && folded < m.segments.size() &&
         loaded->exact_at_or_before(m.segments[folded - 1].last_seq, false) !=
             m.segments[folded - 1].last_seq)
    --folded;
  if (folded == 0) return plan;
  for (size_t i = 0; i < folded; ++i) plan.folded.push_back(m.segments[i].file);
  plan.new_base_seq = m.segments[folded - 1].last_seq;
  plan.new_base_time_ns = m.segments[folded - 1].last_time_ns;
  plan.new_base_file = base_file_name(plan.new_base_seq);
  // 1. The new base snapshot, written under a temporary name, synced, renamed into
  //    place and its directory synced (restore_to_file does all of that). The
  //    manifest does not name it yet: a crash from here to the switch leaves the old
  //    volume whole, and this file over.
  auto view = JournalView::open(std::make_shared<const JournalHistory>(std::move(*loaded)),
                                plan.new_base_seq);
  if (!view) return view.status();
  RestoreOptions ro;
  ro.force = true;  // a file of this name can only be what an interrupted rebase left
  REWIND_RETURN_IF_ERROR(restore_to_file(**view, base_path(journal_dir, plan.new_base_file), ro));
  return plan;
}

Result<LockedJournal> lock_for_change(const std::string& journal_dir, const Logger& logger) {
  auto lock = lock_journal(journal_dir);
  if (!lock) return lock.status();
  // What an interrupted change left behind goes first, so that it never piles up.
  {
    auto m = Manifest::load(journal_dir);
    if (!m) return m.status();
    REWIND_RETURN_IF_ERROR(remove_leftovers(*m, journal_dir, logger));
  }
  auto loaded = JournalHistory::load(journal_dir, true, logger);
  if (!loaded) return loaded.status();
  return LockedJournal{std::move(*lock),
                       std::make_shared<const JournalHistory>(std::move(*loaded))};
}

Result<uint64_t> last_seq_to_change(const JournalHistory& history, const Target& before,
                                    std::string* note) {
  const Manifest& m = history.manifest();
  uint64_t want = m.base_seq;  // for a time before the first record: nothing that old is left
  if (before.kind != Target::Kind::kTime || before.time_ns >= history.first_time_ns()) {
    std::string resolved;
    auto seq = history.resolve(before, &resolved);
    if (!seq) return seq.status();
    want = *seq;
  }
  if (want > m.checkpoint_seq) {
    *note = fmt::format(
        "the image is current to seq {} only (the server stopped uncleanly and has not been "
        "started since); the records after it stay as they are for start-up to redo",
        m.checkpoint_seq);
    want = m.checkpoint_seq;
  }
  if (m.shipped_seq && want > *m.shipped_seq) {
    *note = fmt::format(
        "the log server holds records up to seq {} only (by the last checkpoint); the records "
        "after it stay as they are until it has them",
        *m.shipped_seq);
    want = *m.shipped_seq;
  }
  return want;
}

Result<RebaseResult> rebase(const std::string& journal_dir, const Target& before,
                            const Logger& logger) {
  auto locked = lock_for_change(journal_dir, logger);
  if (!locked) return locked.status();
  const auto& history = locked->history;
  const Manifest& m = history->manifest();

  RebaseResult r;
  r.old_base_seq = r.new_base_seq = m.base_seq;
  r.new_base_time_ns = m.base_time_ns;
  // The last seq to fold, before rounding down to a segment boundary.
  auto last = last_seq_to_change(*history, before, &r.note);
  if (!last) return last.status();
  const uint64_t want = *last;
  const size_t folded = segments_ending_by(m, want);
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
  auto plan = prepare_rebase(journal_dir, m, folded, logger);
  if (!plan) return plan.status();
  if (plan->folded.empty()) {
    r.note = fmt::format(
        "nothing to fold: no sealed segment that ends at or before seq {} ends at an exact "
        "state (coalesced or compacted writes run on past each end)",
        want);
    return r;
  }
  r.new_base_seq = plan->new_base_seq;
  r.new_base_time_ns = plan->new_base_time_ns;
  for (const MarkInfo& mk : history->marks())
    if (mk.seq < r.new_base_seq) r.marks_given.push_back(mk.name);
  auto next = commit_change(journal_dir, m, *plan, &r.bytes_freed);
  if (!next) return next.status();
  r.segments_removed = plan->folded.size();
  log_to(
      logger, LogLevel::kInfo,
      fmt::format("rebased {}: the base is now seq {} ({}); removed {} segments and the old "
                  "base ({} bytes); marks given up: {}",
                  journal_dir, r.new_base_seq, format_time(r.new_base_time_ns), r.segments_removed,
                  r.bytes_freed,
                  r.marks_given.empty() ? "none" : fmt::to_string(fmt::join(r.marks_given, ", "))));
  return r;
}

}  // namespace rwd
