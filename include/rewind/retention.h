// Retention: keeps a served volume's journal within a policy by folding its oldest
// whole segments into the base snapshot while writes go on (docs/FORMAT.md,
// "Rebase"). A thread of its own decides and writes the new base from sealed
// segments; the flusher only switches the manifest (Volume::rebase).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "rewind/log.h"
#include "rewind/status.h"
#include "rewind/volume.h"

namespace rwd {

struct RetentionPolicy {
  // Keep every write at least this long (0: no time limit).
  std::chrono::nanoseconds retain{0};
  // Hard limit on the segments' bytes (0: none). When the journal grows past it, the
  // oldest segments are folded until it is back under three quarters of it, however
  // recent, and the history given up is logged as a warning.
  uint64_t journal_max = 0;
  // How often the policy is checked.
  std::chrono::nanoseconds interval = std::chrono::seconds(1);

  bool active() const { return retain.count() > 0 || journal_max > 0; }
};

class Retention {
 public:
  // Starts the thread (rewind-retain) for `volume`, served from `journal_dir`.
  Retention(Volume& volume, std::string journal_dir, RetentionPolicy policy, Logger logger);
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;
  ~Retention();

  // Stops the thread, waiting for a rebase under way to end. Call before closing the
  // volume.
  void stop();
  // One check of the policy at `now_ns`, in the caller's thread: folds what the
  // policy gives up, if anything. Returns the segments folded.
  Result<size_t> run_once(uint64_t now_ns);

 private:
  void loop();

  Volume& volume_;
  const std::string dir_;
  const RetentionPolicy policy_;
  Logger logger_;
  std::mutex mu_;  // guards stopping_
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace rwd
