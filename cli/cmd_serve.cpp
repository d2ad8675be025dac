#include <fmt/format.h>

#include "commands.h"
#include "exports.h"
#include "rewind/replay/inspect.h"
#include "rewind/volume/write_queue.h"

namespace rwd::cli {

int run_serve(const ServeOptions& o) {
  auto target = make_target(o.target.at, o.target.seq, o.target.mark, wall_clock_ns());
  if (!target) return report("serve", target.status(), {}, kExitUsage);
  std::string hint;
  int exit_code = kExitFailure;
  auto v = ServableVolume::open(o.journal, o.remote, o.cache_size, &hint, &exit_code);
  if (!v) return report("serve", v.status(), hint, exit_code);
  const JournalHistory& h = (*v)->history();
  std::string note;
  auto seq = h.resolve(*target, &note);
  if (!seq) return report("serve", seq.status());
  const std::string sock =
      o.socket.empty() ? fmt::format("/tmp/rewind-{}-seq{}.sock",
                                     volume_id_hex(h.manifest().volume_id).substr(0, 8), *seq)
                       : o.socket;
  if (!o.overlay.empty()) {
    if (!o.writable)
      return report("serve", Status::invalid("--overlay keeps the overlay of a writable export"),
                    "give --writable too", kExitUsage);
    auto e = OverlayExport::start(sock, o.overlay, volume_id_hex(h.manifest().volume_id), *seq,
                                  (*v)->plugin_args(*seq));
    if (!e) return report("serve", e.status());
    if (!note.empty()) fmt::print("{}\n", note);
    fmt::print(
        "serving {} writable as it was at seq {}: writes go to the overlay {} (qcow2), kept "
        "after stop; the history is not changed\n",
        o.journal, *seq, o.overlay);
    fmt::print("{}\n", (*e)->served().uri());
    std::fflush(stdout);
    return (*e)->served().wait() ? kExitOk : kExitFailure;
  }
  auto child = ServerChild::nbdkit(sock, o.writable, (*v)->plugin_args(*seq));
  if (!child) return report("serve", child.status());
  if (!note.empty()) fmt::print("{}\n", note);
  if (o.writable)
    fmt::print(
        "serving {} writable as it was at seq {}: writes go to a throwaway overlay, removed at "
        "stop; the history is not changed\n",
        o.journal, *seq);
  else
    fmt::print("serving {} read-only as it was at seq {}\n", o.journal, *seq);
  fmt::print("{}\n", (*child)->uri());
  std::fflush(stdout);
  return (*child)->wait() ? kExitOk : kExitFailure;
}

}  // namespace rwd::cli
