// rewind-bench-view-open JOURNAL [SEQ] [ROUNDS]: opens a point-in-time view of the
// journal ROUNDS times (default 5) and prints how long each open took, in ms, and
// the extents of the map. For scripts/bench.sh: the open time of a view without
// nbdkit's own start-up around it.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rewind/replay/view.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: %s JOURNAL [SEQ] [ROUNDS]\n", argv[0]);
    return 2;
  }
  const rwd::Target target =
      argc >= 3 ? rwd::Target::at_seq(std::strtoull(argv[2], nullptr, 10)) : rwd::Target::newest();
  const int rounds = argc == 4 ? std::atoi(argv[3]) : 5;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto view = rwd::JournalView::open(argv[1], target, {});
    auto t1 = std::chrono::steady_clock::now();
    if (!view) {
      std::fprintf(stderr, "%s\n", view.status().message().c_str());
      return 1;
    }
    std::printf("%.1f ms, seq %llu, %zu extents\n",
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                static_cast<unsigned long long>((*view)->seq()), (*view)->map().size());
  }
  return 0;
}
