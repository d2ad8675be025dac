#include <fmt/format.h>

#include "commands.h"
#include "rewind/replay/restore.h"

namespace rwd::cli {

void setup_verify(CLI::App& app, VerifyOptions& o) {
  app.add_option("journal", o.journal, "Journal directory")->required();
  app.add_option("--image", o.image, "Also check that replaying to the end reproduces this image");
}

int run_verify(const VerifyOptions& o) {
  VerifyReport r;
  Status st = verify_journal(o.journal, o.image, &r, progress_bar("verify"));
  for (const std::string& n : r.notes) fmt::print("note: {}\n", n);
  if (!st && !o.image.empty() && st.code() == Status::Code::kCorruption && r.last_seq != 0)
    return report("verify", st,
                  "if the server is running, stop it first so that the image is checkpointed");
  if (!st && st.code() == Status::Code::kCorruption) return report("verify", st);
  if (!st) return report("verify", st, journal_hint(st));
  fmt::print("ok: {} segments, {} records, seq {}..{}, every checksum valid{}\n", r.segments,
             r.records, r.first_seq, r.last_seq,
             o.image.empty() ? "" : fmt::format("; {} equals the replay", o.image));
  return kExitOk;
}

}  // namespace rwd::cli
