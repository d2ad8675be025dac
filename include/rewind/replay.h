// Replay to the newest state: the base snapshot with every journal record applied
// in seq order. (Point-in-time targets and the extent-map restore build on this.)
#pragma once

#include <string>

#include "rewind/status.h"

namespace rwd {

// Writes the newest state of the volume in `journal_dir` to `out_path` (created or
// truncated). Fails on any checksum or continuity error.
Status replay_newest(const std::string& journal_dir, const std::string& out_path);

}  // namespace rwd
