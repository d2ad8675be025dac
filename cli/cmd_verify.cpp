#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/units.h"
#include "rewind/replay/restore.h"

namespace rwd::cli {

int run_verify(const VerifyOptions& o) {
  VerifyReport r;
  Status st;
  auto keys = load_keys(o.remote);
  if (!keys) return report("verify", keys.status(), {}, kExitUsage);
  if (is_remote_uri(o.journal)) {
    if (keys->empty())
      return report("verify",
                    Status::invalid("a volume on a log server is verified by the server's "
                                    "operator (rewind verify STORE/VOLUME), or here with --key"),
                    {}, kExitUsage);
    auto f = FetchedVolume::fetch(o.journal, o.remote, *keys);
    if (!f) return report("verify", f.status());
    st = verify_journal((*f)->dir(), o.image, &r, progress_bar("verify"), &*keys);
  } else if (is_s3_uri(o.journal)) {
    // Every object fetched (base chunks checked against the base map as they come),
    // then checked as a local journal.
    auto cache = open_bucket(o.journal, o.remote, 0, {});
    if (!cache) return report("verify", cache.status());
    st = (*cache)->fetch_everything();
    if (st) st = verify_journal((*cache)->dir(), o.image, &r, progress_bar("verify"), &*keys);
    if (st)
      r.notes.push_back(
          fmt::format("fetched {} in {} requests; every base chunk matched the base map",
                      format_size((*cache)->stats().fetched_bytes), (*cache)->stats().requests));
  } else {
    st = verify_journal(o.journal, o.image, &r, progress_bar("verify"), &*keys);
  }
  for (const std::string& n : r.notes) fmt::print("note: {}\n", n);
  if (!st && !o.image.empty() && st.code() == Status::Code::kCorruption && r.last_seq != 0)
    return report("verify", st,
                  "if the server is running, stop it first so that the image is checkpointed");
  if (!st && st.code() == Status::Code::kCorruption) return report("verify", st);
  if (!st) return report("verify", st, journal_hint(st));
  fmt::print("ok: {} segments, {} records, seq {}..{}, every checksum valid{}{}\n", r.segments,
             r.records, r.first_seq, r.last_seq,
             !r.sealed            ? ""
             : r.contents_checked ? "; sealed, every record and base chunk opened with the key"
                                  : "; sealed, contents NOT checked (no --key)",
             o.image.empty() ? "" : fmt::format("; {} equals the replay", o.image));
  return kExitOk;
}

}  // namespace rwd::cli
