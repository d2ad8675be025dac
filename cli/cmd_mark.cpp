#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/file.h"
#include "rewind/format/format.h"
#include "rewind/replay/inspect.h"
#include "rewind/volume/control.h"

namespace rwd::cli {

int run_mark(const MarkOptions& o) {
  Status name_ok = check_mark_name(o.name);
  if (!name_ok) return report("mark", name_ok, {}, kExitUsage);
  const std::string sock =
      o.socket.empty() ? join_path(o.journal, format::kControlSocketName) : o.socket;
  auto answer = control_request(sock, "MARK " + o.name, std::chrono::seconds(60));
  if (!answer)
    return report("mark", answer.status(),
                  "is the volume being served? marks go to a running server");
  if (answer->starts_with("ERR ")) return report("mark", Status::invalid(answer->substr(4)));
  uint64_t seq = 0, time_ns = 0;
  if (std::sscanf(answer->c_str(), "OK %lu %lu", &seq, &time_ns) != 2)
    return report("mark",
                  Status::corruption(fmt::format("unexpected answer from {}: {}", sock, *answer)));
  fmt::print("mark {} at seq {} ({})\n", o.name, seq, format_time(time_ns));
  return kExitOk;
}

}  // namespace rwd::cli
