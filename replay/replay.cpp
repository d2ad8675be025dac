#include "rewind/replay/replay.h"

#include <fcntl.h>

#include "rewind/base/file.h"
#include "rewind/format/manifest.h"
#include "rewind/journal/journal.h"
#include "rewind/journal/redo.h"

namespace rwd {

Status replay_newest(const std::string& journal_dir, const std::string& out_path) {
  auto m = Manifest::load(journal_dir);
  if (!m) return m.status();
  auto base = File::open(base_path(journal_dir, m->base_file), O_RDONLY);
  if (!base) return base.status();
  auto out = File::open(out_path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW);
  if (!out) return out.status();
  bool reflinked = false;
  REWIND_RETURN_IF_ERROR(clone_or_sparse_copy(*base, m->image_size, *out, &reflinked));
  REWIND_RETURN_IF_ERROR(redo_records(journal_dir, *m, m->base_seq, *out));
  return out->sync();
}

}  // namespace rwd
