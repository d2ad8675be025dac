#include <unistd.h>

#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/units.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/restore.h"
#include "rewind/volume/write_queue.h"

namespace rwd::cli {

int run_restore(const RestoreCmdOptions& o) {
  if (o.out.empty() && o.to.empty())
    return report("restore", Status::invalid("give -o OUT (a file) or --to URI (an NBD export)"),
                  {}, kExitUsage);
  auto target = make_target(o.target.at, o.target.seq, o.target.mark, wall_clock_ns());
  if (!target) return report("restore", target.status(), {}, kExitUsage);
  if (!o.out.empty() && !o.force && ::access(o.out.c_str(), F_OK) == 0)
    return report("restore", Status::invalid(fmt::format("{} exists", o.out)),
                  "give --force to replace it, or another path");
  auto keys = load_keys(o.remote);
  if (!keys) return report("restore", keys.status(), {}, kExitUsage);
  // A sealed copy on a log server is fetched as stored and opened here with the keys.
  std::unique_ptr<FetchedVolume> fetched;
  if (is_remote_uri(o.journal) && !keys->empty()) {
    auto f = FetchedVolume::fetch(o.journal, o.remote, *keys);
    if (!f) return report("restore", f.status());
    fetched = std::move(*f);
  }
  if (is_remote_uri(o.journal) && !fetched) {
    if (o.out.empty())
      return report("restore", Status::invalid("from a log server, restore to a file: give -o OUT"),
                    {}, kExitUsage);
    auto link = remote_link(o.journal, o.remote);
    if (!link) return report("restore", link.status(), {}, kExitUsage);
    RestoreOptions ro;
    ro.force = o.force;
    ro.progress = progress_bar("restore");
    auto r = remote_restore(*link, *target, o.out, ro);
    if (!r) return report("restore", r.status());
    if (!r->view.note.empty()) fmt::print("{}\n", r->view.note);
    fmt::print(
        "restored seq {} ({}) from {} to {}: {} extents ({}) from the journal over the base "
        "snapshot; {} received ({} of data, {} of zeroes sent as their length)\n",
        r->view.seq, format_time(r->view.time_ns), o.journal, o.out, r->view.extents,
        format_size(r->view.journal_bytes), format_size(r->wire_bytes),
        format_size(r->end.data_bytes), format_size(r->end.zero_bytes));
    return kExitOk;
  }
  const Logger logger = [](LogLevel level, const std::string& m) {
    if (level >= LogLevel::kInfo) fmt::print(stderr, "rewind restore: {}\n", m);
  };
  std::shared_ptr<BucketCache> bucket;
  if (is_s3_uri(o.journal)) {
    auto cache = open_bucket(o.journal, o.remote, 256ull << 20, logger);
    if (!cache) return report("restore", cache.status());
    bucket = std::move(*cache);
  }
  const std::string dir = bucket ? bucket->dir() : fetched ? fetched->dir() : o.journal;
  auto view = JournalView::open(dir, *target, logger, !bucket);
  if (!view)
    return report("restore", view.status(), bucket || fetched ? "" : journal_hint(view.status()));
  (*view)->set_keys(&*keys);
  if ((*view)->history().sealed() && keys->empty())
    return report("restore",
                  Status::invalid(fmt::format("{} is sealed (shipped with ship-key=); nothing "
                                              "was written",
                                              o.journal)),
                  "give its key file with --key");
  if (bucket) {
    // A cache of a few windows: the restore streams the volume in order.
    (*view)->set_fetcher(bucket);
  } else if (!o.no_image_reads && !fetched) {
    (*view)->use_image(logger);
  }
  RestoreOptions ro;
  ro.force = o.force;
  ro.progress = progress_bar("restore");
  const std::string dest = o.out.empty() ? o.to : o.out;
  Status st = o.out.empty() ? restore_to_nbd(**view, o.to, ro)
              : bucket      ? restore_stream_to_file(**view, o.out, ro)
                            : restore_to_file(**view, o.out, ro);
  if (!st) return report("restore", st);
  uint64_t extents = (*view)->map().size(), bytes = 0;
  for (const auto& [start, e] : (*view)->map()) bytes += e.end - start;
  if (!(*view)->note().empty()) fmt::print("{}\n", (*view)->note());
  if (bucket) {
    const BucketCache::Stats s = bucket->stats();
    fmt::print(
        "restored seq {} ({}) from {} to {}: {} extents ({}) from the journal over the base "
        "snapshot; fetched {} in {} requests\n",
        (*view)->seq(), format_time((*view)->time_ns()), o.journal, dest, extents,
        format_size(bytes), format_size(s.fetched_bytes), s.requests);
    return kExitOk;
  }
  const JournalView::ImageReads image = (*view)->image_reads();
  fmt::print(
      "restored seq {} ({}) to {}: {} extents ({}) from the journal over the base snapshot{}\n",
      (*view)->seq(), format_time((*view)->time_ns()), dest, extents, format_size(bytes),
      image.bytes == 0
          ? ""
          : fmt::format("; {} of it read from the image {}, checked against the "
                        "journal's checksums",
                        format_size(image.bytes), (*view)->history().manifest().image_path));
  for (const std::string& d : (*view)->damaged_segments())
    fmt::print(stderr,
               "rewind restore: warning: {}; this restore needed nothing lost from it, but "
               "the journal is damaged: `rewind verify {}` checks it whole\n",
               d, o.journal);
  return kExitOk;
}

}  // namespace rwd::cli
