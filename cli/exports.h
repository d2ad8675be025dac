// Points in time served over NBD by nbdkit and the plugin, for `rewind serve` and
// `rewind bisect`: the volume's history opened once, and nbdkit run as a child for
// one point, read-only or behind a throwaway copy-on-write overlay.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "rewind/replay/view.h"

namespace rwd::cli {

// A volume's history, opened for serving points of it: a journal directory as it is, a
// bucket through the plugin's own cache, a log server's copy fetched whole into a
// private temporary directory (removed when this is destroyed).
class ServableVolume {
 public:
  // `cache_size`: for s3://, the plugin's cache-size= (empty: its default). An error
  // comes with a hint for the user in *hint (may stay empty) and the exit status it
  // calls for in *exit_code (kExitUsage for missing or unreadable keys).
  static Result<std::unique_ptr<ServableVolume>> open(const std::string& loc,
                                                      const RemoteCliOptions& r,
                                                      const std::string& cache_size,
                                                      std::string* hint, int* exit_code);
  const JournalHistory& history() const { return history_; }
  // The plugin's keys for the point at `seq`.
  std::vector<std::string> plugin_args(uint64_t seq) const;

 private:
  ServableVolume(JournalHistory h) : history_(std::move(h)) {}
  std::unique_ptr<FetchedVolume> fetched_;
  JournalHistory history_;
  std::string journal_;  // as the plugin's journal= takes it
  std::string cache_size_;
  std::vector<std::string> key_files_;
};

// nbdkit in the foreground, a child of this process, serving the plugin on a UNIX
// socket: read-only, or writable into nbdkit's cow filter (an overlay in an unlinked
// temporary file of $TMPDIR, gone when nbdkit exits; the history is never written).
// Destroying it stops nbdkit (SIGTERM) and waits for it. nbdkit is also sent SIGTERM
// if this process dies.
class NbdkitChild {
 public:
  // Returns once the socket exists; an error if nbdkit exits before.
  static Result<std::unique_ptr<NbdkitChild>> start(const std::string& socket, bool writable,
                                                    const std::vector<std::string>& plugin_args);
  ~NbdkitChild();
  pid_t pid() const { return pid_; }
  // Waits until nbdkit exits (SIGTERM and SIGINT to this process go on to it) and
  // returns whether it exited with status 0.
  bool wait();
  // The socket's nbd+unix URI.
  std::string uri() const;

 private:
  NbdkitChild(pid_t pid, std::string socket) : pid_(pid), socket_(std::move(socket)) {}
  pid_t pid_;
  std::string socket_;
};

}  // namespace rwd::cli
