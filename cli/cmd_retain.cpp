#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/units.h"
#include "rewind/history/retention.h"
#include "rewind/replay/inspect.h"
#include "rewind/ship/bucket_writer.h"
#include "rewind/volume/write_queue.h"

namespace rwd::cli {

int run_retain(const RetainOptions& o) {
  RetentionPolicy policy;
  if (!o.retain.empty()) {
    auto d = parse_duration(o.retain);
    if (!d) return report("retain", d.status().with_context("--retain"), {}, kExitUsage);
    policy.retain = *d;
  }
  if (!o.retain_coarse.empty()) {
    auto tiers = parse_retention_tiers(o.retain_coarse);
    if (!tiers)
      return report("retain", tiers.status().with_context("--retain-coarse"), {}, kExitUsage);
    policy.coarse = std::move(*tiers);
  }
  if (!o.journal_max.empty()) {
    auto size = parse_size(o.journal_max);
    if (!size) return report("retain", size.status().with_context("--journal-max"), {}, kExitUsage);
    policy.journal_max = *size;
  }
  if (!policy.active())
    return report("retain", Status::invalid("no policy given"),
                  "give --retain, --retain-coarse or --journal-max", kExitUsage);
  if (Status st = check_retention_policy(policy); !st) return report("retain", st, {}, kExitUsage);
  const Logger logger = [](LogLevel level, const std::string& m) {
    if (level >= LogLevel::kWarning) fmt::print(stderr, "rewind retain: {}\n", m);
  };
  if (is_s3_uri(o.journal)) {
    auto client = open_bucket_client(o.journal, o.remote.endpoint, o.remote.region, o.remote.ca);
    if (!client) return report("retain", client.status());
    auto r = retain_bucket(std::move(*client), policy, wall_clock_ns(), logger);
    if (!r) return report("retain", r.status());
    fmt::print(
        "{} segments folded or compacted in {}; restorable now: seq {} .. seq {}; {} stored, {} "
        "objects deleted\n",
        r->changed, o.journal, r->first_seq, r->last_seq, format_size(r->sent), r->deleted);
    return kExitOk;
  }
  auto changed = apply_retention(o.journal, policy, wall_clock_ns(), logger);
  if (!changed) return report("retain", changed.status(), journal_hint(changed.status()));
  auto r = inspect_journal(o.journal, false);
  if (!r) return report("retain", r.status(), journal_hint(r.status()));
  fmt::print(
      "{} segments folded or compacted; restorable now: seq {} ({}) .. seq {} ({}); "
      "journal {}\n",
      *changed, r->first_seq(), format_time(r->manifest.base_time_ns), r->last_seq(),
      format_time(r->last_time_ns()), format_size(r->journal_bytes()));
  return kExitOk;
}

}  // namespace rwd::cli
