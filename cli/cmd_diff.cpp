#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/json.h"
#include "rewind/base/units.h"
#include "rewind/replay/inspect.h"
#include "rewind/replay/restore.h"
#include "rewind/volume/write_queue.h"

namespace rwd::cli {

Result<Target> parse_point(const std::string& text) {
  if (text.starts_with("seq:")) return make_target({}, text.substr(4), {}, wall_clock_ns());
  if (text.starts_with("mark:")) return make_target({}, {}, text.substr(5), wall_clock_ns());
  return make_target(text, {}, {}, wall_clock_ns());
}

int run_diff(const DiffOptions& o) {
  auto from = parse_point(o.from);
  if (!from) return report("diff", from.status().with_context("--from"), {}, kExitUsage);
  auto to = o.to.empty() ? Result<Target>(Target::newest()) : parse_point(o.to);
  if (!to) return report("diff", to.status().with_context("--to"), {}, kExitUsage);
  // From a bucket, the history needs only what the cache fetches when it opens.
  std::shared_ptr<BucketCache> bucket;
  if (is_s3_uri(o.journal)) {
    auto cache = open_bucket(o.journal, o.remote, 0, {});
    if (!cache) return report("diff", cache.status());
    bucket = std::move(*cache);
  }
  auto h = JournalHistory::load(bucket ? bucket->dir() : o.journal, !bucket, {});
  if (!h) return report("diff", h.status(), bucket ? "" : journal_hint(h.status()));
  std::string note;
  auto s1 = h->resolve(*from, &note);
  if (!s1) return report("diff", s1.status().with_context("--from"));
  auto s2 = h->resolve(*to, &note);
  if (!s2) return report("diff", s2.status().with_context("--to"));
  if (*s1 > *s2)
    return report("diff",
                  Status::invalid(fmt::format("--from (seq {}) is after --to (seq {})", *s1, *s2)),
                  {}, kExitUsage);
  auto extents = changed_extents(*h, *s1, *s2);
  uint64_t bytes = 0;
  for (const auto& e : extents) bytes += e.length;
  if (o.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& e : extents) list.push_back({{"offset", e.offset}, {"length", e.length}});
    fmt::print(
        "{}\n",
        json_text(
            {{"from_seq", *s1}, {"to_seq", *s2}, {"bytes", bytes}, {"extents", std::move(list)}}));
    return kExitOk;
  }
  for (const auto& e : extents) fmt::print("{} {}\n", e.offset, e.length);
  fmt::print(stderr, "seq {}..{}: {} extents, {} changed\n", *s1, *s2, extents.size(),
             format_size(bytes));
  return kExitOk;
}

}  // namespace rwd::cli
