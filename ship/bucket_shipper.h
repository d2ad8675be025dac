// The plugin's shipper when the volume goes to a bucket (ship=s3://): a thread that
// stores the journal's durable bytes there through a BucketWriter, at most every
// bucket_interval, backing off and starting again after errors. A refusal (another
// writer or volume owns the prefix) stops it for good, with phase "refused".
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#include "rewind/journal/journal_tail.h"
#include "rewind/ship/bucket_writer.h"
#include "rewind/ship/shipper.h"

namespace rwd {

class Shipper::BucketImpl {
 public:
  BucketImpl(JournalOwner& owner, std::string dir, ShipperOptions opts, Logger logger);
  ~BucketImpl() { stop(); }
  void stop();
  ShipperStatus status() const;

 private:
  void loop();
  // One session: open the writer, store the base if need be, then ship until stopped
  // or an error.
  Status session(bool* progressed);
  // Waits up to `d` or until stopped; false if stopped.
  bool wait_for(std::chrono::nanoseconds d);
  void update_lag(const Manifest& m, const Journal::Position& durable, uint64_t acked);
  void log(LogLevel level, const std::string& m) { log_to(logger_, level, "ship: " + m); }

  JournalOwner& owner_;
  const std::string dir_;
  const ShipperOptions opts_;
  Logger logger_;
  mutable std::mutex mu_;  // guards stopping_ and status_
  std::condition_variable cv_;
  bool stopping_ = false;
  ShipperStatus status_;
  // The time of the oldest record the bucket lacks (0: none): the lag grows from it
  // while a request to the bucket hangs.
  uint64_t lag_since_ns_ = 0;
  // The thread's alone:
  JournalTail tail_;
  uint64_t oldest_for_ = UINT64_MAX;  // the acked seq oldest_ns_ was read for
  uint64_t oldest_ns_ = 0;            // time of the oldest record the bucket lacks
  std::chrono::steady_clock::time_point last_lag_warning_{};
  std::thread thread_;  // last: started once the members above are ready
};

}  // namespace rwd
