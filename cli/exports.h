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

// A server in the foreground, a child of this process, serving on a UNIX socket.
// Destroying it stops the server (SIGTERM) and waits for it; the server is also sent
// SIGTERM if this process dies.
class ServerChild {
 public:
  // Runs args (args[0] found on PATH); returns once the socket exists, or an error if
  // the server exits before.
  static Result<std::unique_ptr<ServerChild>> start(std::vector<std::string> args,
                                                    const std::string& socket);
  // nbdkit with the plugin: read-only, or writable into nbdkit's cow filter (an overlay
  // in an unlinked temporary file of $TMPDIR, gone when nbdkit exits; the plugin below
  // it opens the history read-only).
  static Result<std::unique_ptr<ServerChild>> nbdkit(const std::string& socket, bool writable,
                                                     const std::vector<std::string>& plugin_args);
  ~ServerChild();
  pid_t pid() const { return pid_; }
  // Waits until the server exits (SIGTERM and SIGINT to this process go on to it) and
  // returns whether it exited with status 0.
  bool wait();
  // The socket's nbd+unix URI.
  std::string uri() const;

 private:
  ServerChild(pid_t pid, std::string socket) : pid_(pid), socket_(std::move(socket)) {}
  pid_t pid_;
  std::string socket_;
};

// A point served writable into an overlay that is kept (`rewind serve --writable
// --overlay FILE`): FILE is a qcow2 image whose backing file is the point's read-only
// export (nbdkit, on a socket in a private directory whose name says the volume and
// the seq), served by qemu-nbd. A FILE that exists must have been made over the same
// point; it is then put over it again (qemu-img rebase -u) and goes on from what it
// holds.
class OverlayExport {
 public:
  static Result<std::unique_ptr<OverlayExport>> start(const std::string& socket,
                                                      const std::string& overlay,
                                                      const std::string& volume_hex, uint64_t seq,
                                                      const std::vector<std::string>& plugin_args);
  ~OverlayExport();
  ServerChild& served() { return *served_; }

 private:
  explicit OverlayExport(TempDir dir) : dir_(std::move(dir)) {}
  TempDir dir_;  // declared first: removed after both servers stopped
  std::unique_ptr<ServerChild> point_, served_;
};

}  // namespace rwd::cli
