// What one `nbdkit rewind` process serves: the live volume with the threads around it
// (the shipper, retention, the control socket), or a read-only point-in-time view.
// The plugin's callbacks only translate to and from this.
//
// Life cycle (docs/DURABILITY.md): open() before nbdkit forks (errors still reach the
// user's terminal), start() after it (threads would not survive the fork), stop() at
// the end.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "rewind/base/log.h"
#include "rewind/base/status.h"
#include "rewind/serve/serve_config.h"

namespace rwd {

class BucketCache;
class JournalView;
class MetricsEndpoint;
class Volume;

class Served {
 public:
  // Opens the volume (creating its journal, or recovering it after an unclean stop)
  // or the view `config` names; starts no thread. `config` is complete
  // (complete_serve_config).
  static Result<std::unique_ptr<Served>> open(ServeConfig config, Logger logger);
  ~Served();
  Served(const Served&) = delete;
  Served& operator=(const Served&) = delete;

  // The live volume: starts the flusher, then the shipper and retention, which read
  // what it makes durable, then the control socket, which answers for all of them.
  // A view has nothing to start.
  Status start();
  // The reverse order: the control socket, the shipper and retention (they use the
  // volume), then the volume: drain the queue, sync, seal, checkpoint. Only the first
  // call does anything (and returns what closing the volume did).
  Status stop();

  // Exactly one of the two is set.
  Volume* volume() const { return volume_.get(); }
  JournalView* view() const { return view_.get(); }
  uint64_t size() const;

  // The answer to one control socket request (rewind/volume/control.h, docs/CONTROL.md).
  std::string control(const std::string& request);
  // HOLD, GMARK, RELEASE and DURABLE: the steps of a group mark (docs/CONTROL.md).
  std::string group_control(const std::string& request);
  // STATUS: the queue's positions and bytes, the size, and the shipper's state if the
  // volume is shipped.
  nlohmann::ordered_json status() const;
  // What metrics= serves: the live volume's counters and state in Prometheus' text
  // format (docs/METRICS.md), at the wall clock's `now_ns`.
  std::string metrics_text(uint64_t now_ns) const;

 private:
  Served(ServeConfig config, Logger logger);
  struct Threads;

  ServeConfig config_;
  Logger logger_;
  std::unique_ptr<Volume> volume_;
  std::unique_ptr<JournalView> view_;
  std::shared_ptr<BucketCache> bucket_;  // a view of a volume in a bucket reads through it
  std::unique_ptr<Threads> threads_;
  std::unique_ptr<MetricsEndpoint> metrics_;  // bound in open(), serving from start()
  bool closed_ = false;
};

}  // namespace rwd
