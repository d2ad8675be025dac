// Bisection of a journal's history (`rewind bisect`): the last point a check finds
// good and the first it finds bad, by binary search over the points between them that
// a crash could have left (flush points and marks), as `git bisect run` searches
// commits. The check itself (serving a point and running a command on it) is the
// caller's; this is the search and what it reports.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rewind/base/status.h"
#include "rewind/format/segment_index.h"
#include "rewind/replay/view.h"

namespace rwd {

enum class Verdict { kGood, kBad, kSkip };
const char* verdict_name(Verdict v);  // "good", "bad", "skip"

// One point checked.
struct BisectStep {
  uint64_t seq = 0;
  Verdict verdict = Verdict::kSkip;
  std::string detail;  // how the check ended ("exit 0"), for the report
  double seconds = 0;  // the check's wall time
};

// The points strictly between `good` and `bad` (seqs) that a crash could have left:
// records a client's FLUSH, FUA request or a mark waited for (format::kFlagFlushPoint,
// marks), whose state the history holds exactly. In seq order.
std::vector<uint64_t> bisect_points(const JournalHistory& h, uint64_t good, uint64_t bad);

// What a check says of a point; an error stops the bisection with it.
using BisectCheck = std::function<Result<BisectStep>(uint64_t seq)>;

struct BisectResult {
  uint64_t last_good = 0, first_bad = 0;
  std::vector<BisectStep> steps;  // in the order they ran, the two ends first
  // Points between last_good and first_bad that the check skipped, so the search could
  // not narrow the range further.
  std::vector<uint64_t> skipped;
};

// Checks `good` (which must be good) and `bad` (which must be bad), then halves the
// range between them over `points` (bisect_points) until no point is left between the
// last good and the first bad one. A skipped point is replaced by its nearest
// unchecked neighbour in the range, alternately after and before it. At most
// ceil(log2(points + 2)) + 2 checks without skips. `on_step` sees each step as it ends.
Result<BisectResult> bisect(const std::vector<uint64_t>& points, uint64_t good, uint64_t bad,
                            const BisectCheck& check,
                            const std::function<void(const BisectStep&)>& on_step);

}  // namespace rwd
