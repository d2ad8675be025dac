#include "rewind/replay/bisect.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace rwd {

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kGood:
      return "good";
    case Verdict::kBad:
      return "bad";
    case Verdict::kSkip:
      return "skip";
  }
  return "?";
}

std::vector<uint64_t> bisect_points(const JournalHistory& h, uint64_t good, uint64_t bad) {
  std::vector<uint64_t> points;
  if (bad <= good + 1) return points;
  h.for_each_entry(good, bad - 1, [&](const IndexEntry& e, uint32_t) {
    const bool point =
        (e.flags & format::kFlagFlushPoint) != 0 || e.type == format::RecordType::kMark;
    if (point && h.exact_at_or_before(e.seq) == e.seq) points.push_back(e.seq);
  });
  return points;
}

Result<BisectResult> bisect(const std::vector<uint64_t>& points, uint64_t good, uint64_t bad,
                            const BisectCheck& check,
                            const std::function<void(const BisectStep&)>& on_step) {
  if (good >= bad)
    return Status::invalid(
        fmt::format("the good point (seq {}) is not before the bad one (seq {})", good, bad));
  BisectResult r;
  auto run = [&](uint64_t seq) -> Result<Verdict> {
    auto step = check(seq);
    if (!step) return step.status();
    step->seq = seq;
    r.steps.push_back(*step);
    if (on_step) on_step(*step);
    return step->verdict;
  };
  // The ends first: a search between two points the check does not tell apart as
  // given would name a wrong write.
  auto v = run(good);
  if (!v) return v.status();
  if (*v != Verdict::kGood)
    return Status::invalid(fmt::format(
        "the check says the good point (seq {}) is {}; give a --good point the check passes", good,
        verdict_name(*v)));
  v = run(bad);
  if (!v) return v.status();
  if (*v != Verdict::kBad)
    return Status::invalid(fmt::format(
        "the check says the bad point (seq {}) is {}; give a --bad point the check fails", bad,
        verdict_name(*v)));
  // Indexes into points; lo = -1 is `good`, hi = n is `bad`.
  const long n = static_cast<long>(points.size());
  long lo = -1, hi = n;
  std::set<long> skipped;
  while (hi - lo > 1) {
    const long mid = lo + (hi - lo) / 2;
    long pick = -1;
    for (long d = 0; pick < 0 && (mid + d < hi || mid - d > lo); ++d) {
      if (mid + d < hi && !skipped.contains(mid + d))
        pick = mid + d;
      else if (d > 0 && mid - d > lo && !skipped.contains(mid - d))
        pick = mid - d;
    }
    if (pick < 0) break;  // every point left between them was skipped
    v = run(points[static_cast<size_t>(pick)]);
    if (!v) return v.status();
    if (*v == Verdict::kGood)
      lo = pick;
    else if (*v == Verdict::kBad)
      hi = pick;
    else
      skipped.insert(pick);
  }
  r.last_good = lo < 0 ? good : points[static_cast<size_t>(lo)];
  r.first_bad = hi >= n ? bad : points[static_cast<size_t>(hi)];
  for (long i : skipped)
    if (i > lo && i < hi) r.skipped.push_back(points[static_cast<size_t>(i)]);
  return r;
}

}  // namespace rwd
