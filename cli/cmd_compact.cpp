#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/units.h"
#include "rewind/history/compact.h"
#include "rewind/replay/inspect.h"

namespace rwd::cli {

int run_compact(const CompactOptions& o) {
  auto before = parse_point(o.before);
  if (!before) return report("compact", before.status().with_context("--before"), {}, kExitUsage);
  auto gran = parse_duration(o.granularity);
  if (gran && gran->count() <= 0)
    gran = Status::invalid(fmt::format("'{}' is not longer than 0", o.granularity));
  if (!gran)
    return report("compact", gran.status().with_context("--granularity"), "e.g. --granularity 1m",
                  kExitUsage);
  auto r = compact(o.journal, *before, static_cast<uint64_t>(gran->count()),
                   [](LogLevel level, const std::string& m) {
                     if (level >= LogLevel::kWarning) fmt::print(stderr, "rewind compact: {}\n", m);
                   });
  if (!r) return report("compact", r.status(), journal_hint(r.status()));
  if (!r->note.empty()) fmt::print("{}\n", r->note);
  const CompactionStats& s = r->stats;
  if (s.segments == 0) {
    fmt::print("nothing was changed\n");
    return kExitOk;
  }
  fmt::print(
      "compacted {} segments ({} rewritten) to one state per {}: {} windows, {} of them "
      "thinned out; {} marks kept exact\n",
      s.segments, s.segments_rewritten, format_duration(*gran), s.windows, s.windows_changed,
      s.marks);
  fmt::print("records left without data: {}, cut down or moved: {}\n", s.records_superseded,
             s.records_trimmed);
  fmt::print("data {} -> {}; segments {} -> {}; {} freed\n", format_size(s.data_before),
             format_size(s.data_after), format_size(s.bytes_before), format_size(s.bytes_after),
             format_size(r->bytes_freed));
  if (s.windows_kept > 0)
    fmt::print(
        "{} windows were left as they were: what survives of them needs more records than "
        "they hold\n",
        s.windows_kept);
  return kExitOk;
}

}  // namespace rwd::cli
