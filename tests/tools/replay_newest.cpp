// rewind-test-replay DIR OUT: writes the newest state of a journal (base snapshot
// plus every record, in seq order) to OUT, so tests can check image == replay.
#include <cstdio>

#include "rewind/replay/replay.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: rewind-test-replay JOURNAL_DIR OUT\n");
    return 2;
  }
  rwd::Status st = rwd::replay_newest(argv[1], argv[2]);
  if (!st) {
    std::fprintf(stderr, "rewind-test-replay: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
