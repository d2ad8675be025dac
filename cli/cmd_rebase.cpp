#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/units.h"
#include "rewind/history/rebase.h"
#include "rewind/replay/inspect.h"

namespace rwd::cli {

int run_rebase(const RebaseOptions& o) {
  auto before = parse_point(o.before);
  if (!before) return report("rebase", before.status().with_context("--before"), {}, kExitUsage);
  auto r = rebase(o.journal, *before, [](LogLevel level, const std::string& m) {
    if (level >= LogLevel::kWarning) fmt::print(stderr, "rewind rebase: {}\n", m);
  });
  if (!r) return report("rebase", r.status(), journal_hint(r.status()));
  if (!r->note.empty()) fmt::print("{}\n", r->note);
  if (r->new_base_seq == r->old_base_seq) {
    fmt::print("the base stays at seq {}; nothing was changed\n", r->old_base_seq);
    return kExitOk;
  }
  fmt::print("the base is now seq {} ({}); removed {} segments and the old base, {} freed\n",
             r->new_base_seq, format_time(r->new_base_time_ns), r->segments_removed,
             format_size(r->bytes_freed));
  if (!r->marks_given.empty())
    fmt::print("marks before the new base, no longer restorable by name: {}\n",
               fmt::join(r->marks_given, ", "));
  return kExitOk;
}

}  // namespace rwd::cli
