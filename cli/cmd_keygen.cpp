#include <fmt/format.h>

#include "commands.h"
#include "rewind/format/seal.h"

namespace rwd::cli {

int run_keygen(const KeygenOptions& o) {
  auto key = generate_key_file(o.file);
  if (!key) {
    if (key.status().errno_value() == EEXIST)
      return report("keygen",
                    Status::invalid(fmt::format("{} exists; a key file is never replaced (the "
                                                "copies sealed with it would be lost)",
                                                o.file)));
    return report("keygen", key.status().with_context(o.file));
  }
  fmt::print(
      "key {} written to {}\n"
      "Keep it secret, and keep a copy of it somewhere other than this machine: without it, "
      "nothing sealed with it can be read.\n",
      key_id_hex(key->id), o.file);
  return kExitOk;
}

}  // namespace rwd::cli
