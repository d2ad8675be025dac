#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include "commands.h"
#include "rewind/base/file.h"
#include "rewind/base/units.h"
#include "rewind/journal/journal_dir.h"
#include "rewind/volume/volume.h"

namespace rwd::cli {

int run_init(const InitOptions& o) {
  struct stat st;
  bool exists = ::stat(o.image.c_str(), &st) == 0;
  if (!o.size.empty()) {
    auto size = parse_size(o.size);
    if (!size) return report("init", size.status().with_context("--size"), {}, kExitUsage);
    if (*size == 0 || *size % 512 != 0)
      return report("init",
                    Status::invalid(fmt::format(
                        "--size {}: {} bytes is not a non-zero multiple of 512", o.size, *size)),
                    {}, kExitUsage);
    if (exists) {
      if (static_cast<uint64_t>(st.st_size) != *size)
        return report("init", Status::invalid(fmt::format(
                                  "image {} exists and is {} bytes, not the {} bytes --size asks "
                                  "for; drop --size or give a new image path",
                                  o.image, st.st_size, *size)));
    } else {
      auto f = create_new_file(o.image);
      if (!f) return report("init", f.status());
      Status t = f->truncate(*size);
      if (t.is_ok()) t = f->sync();
      if (!t) return report("init", t);
    }
  } else if (!exists) {
    return report(
        "init",
        Status::invalid(fmt::format("image {} does not exist; give --size to create it", o.image)),
        {}, kExitUsage);
  }
  char image[PATH_MAX];
  if (::realpath(o.image.c_str(), image) == nullptr)
    return report("init", Status::io_error(fmt::format("image {}", o.image), errno));
  std::string journal = o.journal;
  if (!journal.empty() && journal[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd) == nullptr)
      return report("init", Status::io_error("cannot read the current directory", errno));
    journal = join_path(cwd, journal);
  }
  std::string created;
  Status s = create_journal(image, journal, [&](LogLevel level, const std::string& msg) {
    if (level == LogLevel::kInfo) created = msg;
  });
  if (!s) return report("init", s);
  fmt::print("{}\n", created);
  return kExitOk;
}

}  // namespace rwd::cli
