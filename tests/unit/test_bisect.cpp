// The search of `rewind bisect` (replay/bisect.h) against checks whose answer is known:
// a history whose points turn bad at one of them, with and without points the check
// skips, and checks that fail.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <set>

#include "rewind/replay/bisect.h"

using namespace rwd;

namespace {

// Points 10, 20, ... between good = 0 and bad = 10 * (n + 1).
std::vector<uint64_t> points_of(size_t n) {
  std::vector<uint64_t> p;
  for (size_t i = 1; i <= n; ++i) p.push_back(10 * i);
  return p;
}

// A check that finds every seq >= first_bad bad, and skips the seqs in `skip`.
BisectCheck check_of(uint64_t first_bad, std::set<uint64_t> skip = {}) {
  return [=](uint64_t seq) -> Result<BisectStep> {
    BisectStep s;
    s.verdict = skip.contains(seq) ? Verdict::kSkip
                : seq >= first_bad ? Verdict::kBad
                                   : Verdict::kGood;
    return s;
  };
}

}  // namespace

TEST_CASE("bisect finds the first bad point within log2 of the points plus two steps", "[bisect]") {
  for (size_t n : {0u, 1u, 2u, 3u, 7u, 8u, 100u, 1000u}) {
    const auto points = points_of(n);
    const uint64_t bad = 10 * (n + 1);
    const auto bound = static_cast<size_t>(std::ceil(std::log2(static_cast<double>(n + 2)))) + 2;
    for (size_t culprit = 0; culprit <= n; ++culprit) {
      const uint64_t first_bad = 10 * (culprit + 1);  // points[culprit], or `bad` itself
      auto r = bisect(points, 0, bad, check_of(first_bad), {});
      INFO("n " << n << " first bad " << first_bad);
      REQUIRE(r.is_ok());
      CHECK(r->first_bad == first_bad);
      CHECK(r->last_good == first_bad - 10);
      CHECK(r->skipped.empty());
      CHECK(r->steps.size() <= bound);
      REQUIRE(r->steps.size() >= 2);
      CHECK(r->steps[0].seq == 0);  // the ends first
      CHECK(r->steps[1].seq == bad);
    }
  }
}

TEST_CASE("bisect steps around skipped points and says when they keep it from being exact",
          "[bisect]") {
  const auto points = points_of(100);
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    const uint64_t first_bad = 10 * (1 + rng() % 101);
    std::set<uint64_t> skip;
    for (uint64_t p : points)
      if (rng() % 3 == 0) skip.insert(p);
    std::vector<uint64_t> seen;
    auto r = bisect(points, 0, 1010, check_of(first_bad, skip),
                    [&](const BisectStep& s) { seen.push_back(s.seq); });
    INFO("round " << round << " first bad " << first_bad);
    REQUIRE(r.is_ok());
    CHECK(seen.size() == r->steps.size());
    // The answer brackets the first bad point, and only skipped points lie between.
    CHECK(r->last_good < first_bad);
    CHECK(r->first_bad >= first_bad);
    for (uint64_t p : points) {
      if (p <= r->last_good || p >= r->first_bad) continue;
      CHECK(skip.contains(p));
    }
    std::vector<uint64_t> expected_skipped;
    for (uint64_t p : skip)
      if (p > r->last_good && p < r->first_bad) expected_skipped.push_back(p);
    CHECK(r->skipped == expected_skipped);
    if (!skip.contains(first_bad) && !skip.contains(first_bad - 10)) {
      // Both points around the change were judged: the answer is exact.
      CHECK(r->first_bad == first_bad);
      CHECK(r->skipped.empty());
    }
    std::set<uint64_t> checked(seen.begin(), seen.end());
    CHECK(checked.size() == seen.size());  // no point is checked twice
  }
}

TEST_CASE("bisect refuses ends the check does not confirm and stops on a failing check",
          "[bisect]") {
  const auto points = points_of(10);
  auto r = bisect(points, 0, 110, check_of(0), {});  // even the good end is bad
  REQUIRE_FALSE(r.is_ok());
  CHECK_THAT(r.status().message(), Catch::Contains("the good point (seq 0) is bad"));
  r = bisect(points, 0, 110, check_of(1000), {});  // even the bad end is good
  REQUIRE_FALSE(r.is_ok());
  CHECK_THAT(r.status().message(), Catch::Contains("the bad point (seq 110) is good"));
  r = bisect(points, 0, 110, check_of(50, {110}), {});
  REQUIRE_FALSE(r.is_ok());
  CHECK_THAT(r.status().message(), Catch::Contains("the bad point (seq 110) is skip"));
  r = bisect(points, 50, 50, check_of(50), {});
  REQUIRE_FALSE(r.is_ok());

  int calls = 0;
  r = bisect(points, 0, 110,
             [&](uint64_t seq) -> Result<BisectStep> {
               if (++calls == 4) return Status::invalid("the check exited 200");
               return check_of(70)(seq);
             },
             {});
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().message() == "the check exited 200");
  CHECK(calls == 4);
}
