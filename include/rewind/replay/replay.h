// Replay to the newest state the simple way: the base snapshot with every journal
// record applied in seq order. Independent of the extent-map views, which is why the
// tests use it to check image == replay(base, journal).
#pragma once

#include <string>

#include "rewind/base/status.h"

namespace rwd {

// Writes the newest state of the volume in `journal_dir` to `out_path` (created or
// truncated). Fails on any checksum or continuity error.
Status replay_newest(const std::string& journal_dir, const std::string& out_path);

}  // namespace rwd
